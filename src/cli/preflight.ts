/**
 * Kernel settings of the network namespace flowgate filters in that its guarantees lean on, read
 * when `flowgate run` starts (and reloads) and after `flowgate rules apply`: each one that is off
 * gives a warning, not a refusal to start (the operator may have reasons, and filtering without
 * the guarantee beats not filtering).
 */
import { readFileSync } from 'node:fs';

/** `/proc/sys` path (relative to the root given) of conntrack's "be liberal" switch. */
export const BE_LIBERAL = 'net/netfilter/nf_conntrack_tcp_be_liberal';
/** `/proc/sys` path of conntrack's switch for picking up connections it has no entry for. */
export const TCP_LOOSE = 'net/netfilter/nf_conntrack_tcp_loose';

/**
 * Warnings for the settings under `procSys` (the running namespace's /proc/sys by default).
 * Only what can be read is judged: before conntrack is loaded (the rules' first match loads it)
 * its settings do not exist yet and nothing is said about them.
 */
export function kernelWarnings(procSys = '/proc/sys'): string[] {
  const warnings: string[] = [];
  if (read(`${procSys}/${BE_LIBERAL}`) === '1') {
    // With it set conntrack calls nothing out of window INVALID, so the rules' first drop no
    // longer refuses a client's ACK of data its server never sent: once a hello's server answer
    // bypasses the queue, that ACK is the only proof that the server answered the hello flowgate
    // read (docs/evasion.md 6), and a client could end a TLS flow's inspection with a fake hello.
    warnings.push('nf_conntrack_tcp_be_liberal is 1 in this network namespace: conntrack lets out-of-window '
      + 'packets through, and flowgate relies on its INVALID drop to refuse a client\'s acknowledgement of '
      + 'data its server never sent (docs/evasion.md 6); set it to 0 (sysctl -w net.netfilter.nf_conntrack_tcp_be_liberal=0)');
  }
  if (read(`${procSys}/${TCP_LOOSE}`) === '1') {
    // The default. A client can make conntrack forget its connection while the server keeps it
    // (an RST that conntrack reads in PREROUTING but the kernel then drops, with a TTL of 1 or too
    // big to forward), and conntrack then picks it up again from the next packet with its window
    // checks off: an ACK of data the server never sent passes (docs/evasion.md 6).
    warnings.push('nf_conntrack_tcp_loose is 1 in this network namespace: conntrack picks up a TCP connection '
      + 'it has no entry for from any packet, without window checks, so a client that makes it forget its '
      + 'connection can then acknowledge data its server never sent (docs/evasion.md 6); set it to 0 '
      + '(sysctl -w net.netfilter.nf_conntrack_tcp_loose=0: connections conntrack has no entry for, such as '
      + 'those open before it was loaded, are then dropped)');
  }
  return warnings;
}

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}
