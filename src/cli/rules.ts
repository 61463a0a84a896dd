/**
 * The iptables rules that divert TCP to flowgate's queue, and their installation.
 *
 * Layout (PLATFORM.md): decided flows are recognised by their connmark before the queue rule, so
 * the kernel stops queueing them; a verdict comes back as NF_REPEAT with a mark, which the rules
 * after the queue rule save into the connmark and act on. Everything lives in a chain of our own
 * (FLOWGATE), jumped to from the built-in chains, so `remove` takes out exactly what `apply` put in.
 */
import { spawn } from 'node:child_process';
import { FlowgateError, UsageError } from '../errors.js';
import { DEFAULT_MARKS, type MarkConfig } from '../verdict/sink.js';

/** Where flowgate sits: forwarding gateway, or the host's own connections. */
export type RulesMode = 'gateway' | 'host';

/** What `flowgate rules` is asked for. */
export interface RulesOptions {
  mode: RulesMode;
  /** First and last queue number; equal for a single queue. */
  queues: [number, number];
  family: '4' | '6' | 'both';
  marks: MarkConfig;
  /** Reject UDP 443 so browsers fall back from QUIC to TCP, where flowgate can see them. */
  rejectQuic: boolean;
  /** Chain name. Default FLOWGATE in gateway mode, FLOWGATE_HOST in host mode (both can be installed at once). */
  chain?: string;
  /**
   * With one queue N: bare SYNs and SYN-ACKs skip the queue; NFLOG group N copies them to the
   * daemon (config `handshake_log`, on by default) and they are accepted at once. See handshakeLogRules.
   */
  handshakeLog: boolean;
  /**
   * Gateway mode: drop TCP packets of flows not yet allowed whose source address would not be
   * routed back out of the interface they came in on (strict reverse-path filtering, `-m
   * rpfilter` in the raw table's PREROUTING; see rpfilterRules). Off by default: a gateway
   * with asymmetric routes would lose those flows.
   */
  rpfilter?: boolean;
}

/** Defaults for {@link RulesOptions}. */
export const DEFAULT_RULES: RulesOptions = {
  mode: 'gateway', queues: [0, 0], family: 'both', marks: DEFAULT_MARKS, rejectQuic: false, handshakeLog: true,
};

/** The chain the rules live in. */
export function chainName(o: RulesOptions): string {
  return o.chain ?? (o.mode === 'gateway' ? 'FLOWGATE' : 'FLOWGATE_HOST');
}

/** The chain that logs and accepts bare handshakes (handshakeLog). */
export function handshakeChainName(o: RulesOptions): string {
  return `${chainName(o)}_SYN`;
}

/** Whether the rules log bare handshakes rather than queue them: asked for, and one queue (NFLOG cannot balance). */
export function logsHandshakes(o: RulesOptions): boolean {
  return o.handshakeLog && o.queues[0] === o.queues[1];
}

/** The raw table's chain for reverse-path filtering (rpfilter). */
export function rpfilterChainName(o: RulesOptions): string {
  return `${chainName(o)}_RPF`;
}

/**
 * The rule of the rpfilter chain. flowgate ends a TLS flow's inspection once the client
 * acknowledges data the server sent, which conntrack vouches for (docs/evasion.md 6) as long as
 * what it counts as the server's packets are the server's: a client that sends a packet with the
 * server's address back through the gateway could make it believe otherwise. Such a packet comes
 * in on the client's side, and the route back to its source leaves on the server's. The check
 * must come before conntrack reads the packet, which it does first thing in PREROUTING (what it
 * learns from a packet stays learnt if the packet is dropped later): so the raw table, the one
 * place before it where `rpfilter` is valid. There no connmark is known yet, so every TCP packet
 * pays one route lookup, decided flows' too. (The rp_filter sysctl checks only when the packet is
 * routed, after conntrack: too late for this.)
 */
export function rpfilterRules(): string[][] {
  return [['-m', 'rpfilter', '--invert', '-j', 'DROP']];
}

/** The jump from raw PREROUTING to the rpfilter chain. */
function rpfilterJump(o: RulesOptions): string[] {
  return ['-p', 'tcp', '-j', rpfilterChainName(o)];
}

/** Our chains, the one the built-in chains jump to first (it refers to the others). */
export function chainNames(o: RulesOptions): string[] {
  return logsHandshakes(o) ? [chainName(o), handshakeChainName(o)] : [chainName(o)];
}

const hex = (n: number) => `0x${n.toString(16)}`;

/** The built-in chains that jump to ours. */
export function hookChains(mode: RulesMode): string[] {
  return mode === 'gateway' ? ['FORWARD'] : ['OUTPUT', 'INPUT'];
}

/** The rules of our chain, as iptables arguments after `-A CHAIN`. */
export function chainRules(o: RulesOptions, family: 4 | 6): string[][] {
  const m = o.marks;
  const mm = (v: number) => `${hex(v)}/${hex(m.mask)}`;
  const queue = o.queues[0] === o.queues[1]
    ? ['--queue-num', String(o.queues[0])]
    : ['--queue-balance', `${o.queues[0]}:${o.queues[1]}`];
  const reset = ['-j', 'REJECT', '--reject-with', 'tcp-reset'];
  const rules: string[][] = [
    // Packets conntrack finds invalid (outside the window, bad state) are dropped before anyone inspects them.
    ['-p', 'tcp', '-m', 'conntrack', '--ctstate', 'INVALID', '-j', 'DROP'],
    ['-p', 'tcp', '-m', 'connmark', '--mark', mm(m.allow), '-j', 'ACCEPT'],
    ['-p', 'tcp', '-m', 'connmark', '--mark', mm(m.block), ...reset],
    ['-p', 'tcp', '-m', 'connmark', '--mark', mm(m.inspect), '-m', 'conntrack', '--ctdir', 'REPLY', '-j', 'ACCEPT'],
    ...pureAckRules(family),
    ...(logsHandshakes(o) ? bareTcpRules(family, '0x07=0x02', ['-j', handshakeChainName(o)]) : []),
    ['-p', 'tcp', '-m', 'mark', '--mark', mm(0), '-j', 'NFQUEUE', ...queue, '--queue-bypass'],
    ['-p', 'tcp', '-j', 'CONNMARK', '--save-mark', '--nfmask', hex(m.mask), '--ctmask', hex(m.mask)],
    ['-p', 'tcp', '-m', 'mark', '--mark', mm(m.allow), '-j', 'ACCEPT'],
    ['-p', 'tcp', '-m', 'mark', '--mark', mm(m.block), ...reset],
    ['-p', 'tcp', '-m', 'mark', '--mark', mm(m.inspect), '-j', 'ACCEPT'],
  ];
  if (o.mode === 'host') {
    // Loopback traffic (the webhook, local services) is never diverted: flowgate would wait on itself.
    rules.unshift(['-i', 'lo', '-j', 'RETURN'], ['-o', 'lo', '-j', 'RETURN']);
  }
  if (o.rejectQuic) {
    const unreachable = family === 4 ? 'icmp-port-unreachable' : 'icmp6-port-unreachable';
    rules.unshift(['-p', 'udp', '--dport', '443', '-j', 'REJECT', '--reject-with', unreachable]);
  }
  return rules;
}

/**
 * Bare ACKs (no payload; SYN, FIN, RST and URG clear) carry nothing to inspect, and each trip
 * through the queue costs a wake-up of the daemon, so they never enter it. Neither iptables nor
 * u32 can subtract header lengths from the packet length, so there is one exact rule per TCP
 * header length (data offset 5-15 words): the IP length must equal the headers' length. IPv4
 * packets with IP options and IPv6 packets with extension headers do not match and are queued
 * as before.
 */
export function pureAckRules(family: 4 | 6): string[][] {
  return bareTcpRules(family, '0x37=0x10', ['-j', 'ACCEPT']);
}

/**
 * One rule per TCP header length for packets without payload whose flags byte, masked, equals a
 * value (`flags`: "MASK=VALUE"), each with `target`.
 */
function bareTcpRules(family: 4 | 6, flags: string, target: string[]): string[][] {
  const rules: string[][] = [];
  for (let doff = 5; doff <= 15; doff++) {
    // Offsets: IPv4 byte 0 version/IHL, bytes 2-3 total length, TCP at 20; IPv6 bytes 4-5
    // payload length and byte 6 next header, TCP at 40. TCP byte 12 holds the data offset, 13 the flags.
    const [ip, tcp] = family === 4
      ? [`0>>24=0x45&&0&0xffff=${20 + 4 * doff}`, 32]
      : [`4>>8=${hex(((4 * doff) << 8) | 6)}`, 52];
    rules.push(['-p', 'tcp', '-m', 'u32', '--u32', `${ip}&&${tcp}>>28=${doff}&&${tcp}>>16&${flags}`, ...target]);
  }
  return rules;
}

/**
 * The rules of the handshake chain (handshakeLog): bare SYNs and SYN-ACKs (no payload; SYN set,
 * FIN and RST clear, as the binding's IsBareHandshake) carry nothing to inspect or decide, yet
 * the engine needs them (sequence numbers, the SYN's TTL and options: EVASION.md G1, 3, 13). The
 * queue would hold each for a round trip through the daemon; NFLOG instead copies it to the
 * daemon's socket for group N and the packet goes on at once. The copy is in that socket before
 * the packet leaves, so before the client can send the data that follows it; the binding reads
 * the group before it walks what it read from the queue (native/README.md, "Handshakes through
 * NFLOG").
 */
export function handshakeLogRules(o: RulesOptions): string[][] {
  return [
    ['-j', 'NFLOG', '--nflog-group', String(o.queues[0]), '--nflog-prefix', HANDSHAKE_LOG_PREFIX],
    ['-j', 'ACCEPT'],
  ];
}

/**
 * The prefix of the handshake copies: the binding reads only copies that carry it (native/src/wire.h
 * kLogPrefix), so another rule logging to the same group (a plain `-j NFLOG` logs to group 0)
 * cannot feed the engine.
 */
export const HANDSHAKE_LOG_PREFIX = 'flowgate';

/** The jump from a built-in chain to ours. */
function jumpRule(o: RulesOptions): string[] {
  return o.rejectQuic ? ['-j', chainName(o)] : ['-p', 'tcp', '-j', chainName(o)];
}

/** An iptables-restore snippet (use with --noflush) for one family. */
export function restoreSnippet(o: RulesOptions, family: 4 | 6): string {
  const lines = [
    `# flowgate ${o.mode} rules for ${family === 4 ? 'iptables' : 'ip6tables'}-restore --noflush`,
    `# decided flows: connmark ${hex(o.marks.allow)} allow, ${hex(o.marks.block)} block, ${hex(o.marks.inspect)} ` +
      `inspect requests (mask ${hex(o.marks.mask)})`,
    '*filter',
    ...chainLines(o, family),
    ...hookChains(o.mode).map((c) => `-I ${c} 1 ${jumpRule(o).join(' ')}`),
    'COMMIT',
    ...rpfilterSection(o, true),
    '',
  ];
  return lines.join('\n');
}

/** iptables-restore lines that create (or flush) our chains and fill them. */
function chainLines(o: RulesOptions, family: 4 | 6): string[] {
  const hs = logsHandshakes(o) ? handshakeLogRules(o).map((r) => `-A ${handshakeChainName(o)} ${r.join(' ')}`) : [];
  return [
    ...chainNames(o).map((c) => `:${c} - [0:0]`),
    ...hs,
    ...chainRules(o, family).map((r) => `-A ${chainName(o)} ${r.join(' ')}`),
  ];
}

/**
 * The raw table's iptables-restore section for `--rpfilter` (none without it): the chain created
 * (or flushed) and filled, and with `withJump` the jump to it (applyRules inserts that itself, once).
 */
function rpfilterSection(o: RulesOptions, withJump: boolean): string[] {
  if (o.rpfilter !== true) return [];
  const chain = rpfilterChainName(o);
  return ['*raw', `:${chain} - [0:0]`, ...rpfilterRules().map((r) => `-A ${chain} ${r.join(' ')}`),
    ...(withJump ? [`-I PREROUTING 1 ${rpfilterJump(o).join(' ')}`] : []), 'COMMIT'];
}

/** Families selected by `--family`. */
export function families(o: RulesOptions): Array<4 | 6> {
  return o.family === 'both' ? [4, 6] : o.family === '4' ? [4] : [6];
}

/** The text `flowgate rules print` shows. */
export function printRules(o: RulesOptions): string {
  return families(o).map((f) => restoreSnippet(o, f)).join('\n');
}

function binary(family: 4 | 6, restore = false): string {
  return `${family === 4 ? 'iptables' : 'ip6tables'}${restore ? '-restore' : ''}`;
}

/** Runs a command; resolves with its exit code and output. Missing binaries are a clear error. */
export function runCommand(cmd: string, args: string[], input?: string):
  Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (err: NodeJS.ErrnoException) => {
      reject(err.code === 'ENOENT'
        ? new FlowgateError('ERR_MISSING_TOOL', `${cmd} not found: install the Debian package iptables`, { cause: err })
        : err);
    });
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    if (input !== undefined && child.stdin !== null) {
      child.stdin.on('error', () => {}); // the command may exit without reading; its exit code tells
      child.stdin.end(input);
    }
  });
}

async function iptables(family: 4 | 6, args: string[]): Promise<{ code: number; stderr: string }> {
  return runCommand(binary(family), ['-w', ...args]);
}

/** Installs the rules; running it again leaves exactly one copy. */
export async function applyRules(o: RulesOptions): Promise<void> {
  for (const family of families(o)) {
    // Chain contents first (created or flushed by the restore), then one jump per built-in chain.
    const body = ['*filter', ...chainLines(o, family), 'COMMIT', ...rpfilterSection(o, false), ''].join('\n');
    const res = await runCommand(binary(family, true), ['-w', '--noflush'], body);
    if (res.code !== 0) {
      throw new FlowgateError('ERR_RULES', `${binary(family, true)} failed: ${res.stderr.trim()}`);
    }
    for (const chain of hookChains(o.mode)) await ensureJump(family, 'filter', chain, jumpRule(o));
    if (!logsHandshakes(o)) {
      // Applied before with the handshake log: its chain, no longer jumped to, goes (absent: no error).
      if ((await iptables(family, ['-F', handshakeChainName(o)])).code === 0) await iptables(family, ['-X', handshakeChainName(o)]);
    }
    if (o.rpfilter === true) {
      await ensureJump(family, 'raw', 'PREROUTING', rpfilterJump(o));
    } else {
      // Applied before with --rpfilter: applying without it takes the check out.
      await deleteJumps(family, 'raw', 'PREROUTING', rpfilterJump(o));
      await dropChain(family, 'raw', rpfilterChainName(o));
    }
  }
}

/** Inserts `jump` first in `table`'s `chain` unless it is there already. */
async function ensureJump(family: 4 | 6, table: string, chain: string, jump: string[]): Promise<void> {
  if ((await iptables(family, ['-t', table, '-C', chain, ...jump])).code === 0) return;
  const ins = await iptables(family, ['-t', table, '-I', chain, '1', ...jump]);
  if (ins.code !== 0) throw new FlowgateError('ERR_RULES', `${binary(family)} -t ${table} -I ${chain} failed: ${ins.stderr.trim()}`);
}

/** Deletes every copy of `jump` from `table`'s `chain` (none there: nothing happens). */
async function deleteJumps(family: 4 | 6, table: string, chain: string, jump: string[]): Promise<void> {
  for (let i = 0; i < 16; i++) {
    if ((await iptables(family, ['-t', table, '-D', chain, ...jump])).code !== 0) break;
  }
}

/** Flushes and deletes one of our chains in `table` (absent: nothing happens). */
async function dropChain(family: 4 | 6, table: string, chain: string): Promise<void> {
  if ((await iptables(family, ['-t', table, '-F', chain])).code !== 0) return;
  const del = await iptables(family, ['-t', table, '-X', chain]);
  if (del.code !== 0) throw new FlowgateError('ERR_RULES', `${binary(family)} -t ${table} -X ${chain} failed: ${del.stderr.trim()}`);
}

/** Removes every jump to our chain and the chain itself; absent rules are not an error. */
export async function removeRules(o: RulesOptions): Promise<void> {
  for (const family of families(o)) {
    for (const chain of hookChains(o.mode)) {
      for (const jump of [['-p', 'tcp', '-j', chainName(o)], ['-j', chainName(o)]]) await deleteJumps(family, 'filter', chain, jump);
    }
    // The main chain first (it jumps to the handshake chain), then the handshake chain, which
    // may be there whatever `o` says (rules applied with other options).
    for (const chain of [chainName(o), handshakeChainName(o)]) await dropChain(family, 'filter', chain);
    await deleteJumps(family, 'raw', 'PREROUTING', rpfilterJump(o));
    await dropChain(family, 'raw', rpfilterChainName(o));
  }
}

/** Parses `--queue N` / `--queues A:B` into a range. */
export function parseQueues(queue?: string, queues?: string): [number, number] {
  if (queue !== undefined && queues !== undefined) throw new UsageError('use either --queue or --queues, not both');
  if (queues !== undefined) {
    const m = /^(\d{1,5}):(\d{1,5})$/.exec(queues);
    if (!m || Number(m[1]) > Number(m[2]) || Number(m[2]) > 65535) {
      throw new UsageError(`--queues takes A:B with 0 <= A <= B <= 65535, got "${queues}"`);
    }
    return [Number(m[1]), Number(m[2])];
  }
  if (queue !== undefined) {
    if (!/^\d{1,5}$/.test(queue) || Number(queue) > 65535) throw new UsageError(`--queue takes 0-65535, got "${queue}"`);
    return [Number(queue), Number(queue)];
  }
  return [0, 0];
}
