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
   * Gateway mode: drop TCP packets whose source address would not be routed back out of the
   * interface they came in on (strict reverse-path filtering, `-m rpfilter` in the raw table's
   * PREROUTING; see rpfilterRules). Off by default: a gateway with asymmetric routes would lose
   * those flows.
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

/** The chain the server's packets of a flow whose hello carries the answer mark go through (answerRules). */
export function answerChainName(o: RulesOptions): string {
  return `${chainName(o)}_ANS`;
}

/**
 * Whether the rules end a hello's inspection on the server's ServerHello (answerRules): with an
 * answer mark, and the handshake log, whose group gets the copy that tells the daemon.
 */
export function answersInKernel(o: RulesOptions): boolean {
  return logsHandshakes(o) && (o.marks.answer ?? 0) !== 0;
}

/**
 * Whether the answer chain needs the guard of answerGuardRules: on a gateway without `rpfilter`,
 * where nothing else stops a client from sending a fake ServerHello in its server's name (in host
 * mode the clients are the host's own programs; `rpfilter` drops such packets in the raw table).
 * Only packets the guard vouched for then enter the answer chain.
 */
export function guardsAnswers(o: RulesOptions): boolean {
  return answersInKernel(o) && o.mode === 'gateway' && o.rpfilter !== true;
}

/** The mangle table's chain that guards the answer chain (guardsAnswers). */
export function answerGuardChainName(o: RulesOptions): string {
  return `${chainName(o)}_ANSRPF`;
}

/**
 * The rules of the answer guard (guardsAnswers). A client can send a packet with its server's
 * address back through the gateway, in the server's window (it saw the SYN-ACK): as the server's
 * first data packet of a hello with the answer bit, a fake ServerHello would allow the connection,
 * and the real HelloRetryRequest and the second hello would follow unread. Such a packet comes in
 * on the client's side while the route back to its source leaves on the server's: strict
 * reverse-path filtering refuses it. `rpfilter` is valid only in PREROUTING of the raw and mangle
 * tables, the answer chain's jump is in the filter table's FORWARD; so the guard vouches for a
 * packet rather than refusing one: a server-side packet of a connection with the answer bit that
 * passes the check gets the answer bit in its packet mark, and only packets with it enter the
 * answer chain (chainRules). A fake, a packet that came by before the hello's verdict saved the
 * bit, one whose mark a later rule overwrote, or every packet while the guard is missing (a mangle
 * table flushed by another tool), goes on as any server packet of an inspected flow: accepted
 * unread, and the client's next record is read by the daemon as without the chain. Nothing is
 * dropped; a fake leaves the answer bit for the server's real answer; packets of other connections
 * pay one connmark test and return. A server reached by an asymmetric route fails the check: its
 * connections lose the shortcut, not traffic. No such packet reaches the CONNMARK save, which would
 * keep the bit (a REPLY packet of a connection with the answer bit has the inspect mark: the chain
 * accepts it before the queue). The bit is cleared first on every packet of such a connection,
 * whoever set it before (a raw-table rule, tc); a later rule that sets it (`CONNMARK --restore-mark`
 * with a mask that covers it) would vouch for anything, and the docs say so: the bit is flowgate's.
 */
export function answerGuardRules(o: RulesOptions): string[][] {
  const bit = hex(o.marks.answer!);
  return [
    ['-m', 'connmark', '!', '--mark', `${bit}/${bit}`, '-j', 'RETURN'],
    ['-j', 'MARK', '--set-xmark', `0x0/${bit}`],
    ['-m', 'conntrack', '--ctdir', 'REPLY', '-m', 'rpfilter', '-j', 'MARK', '--set-xmark', `${bit}/${bit}`],
  ];
}

/** The jump from mangle PREROUTING to the answer guard (fixed, so a change of marks still finds it). */
function answerGuardJump(o: RulesOptions): string[] {
  return ['-p', 'tcp', '-j', answerGuardChainName(o)];
}

/** The connmark bits the rules save and set: the mask, and the answer bit with the answer chain. */
function savedMask(o: RulesOptions): string {
  return hex((o.marks.mask | (answersInKernel(o) ? o.marks.answer! : 0)) >>> 0);
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
  return [chainName(o), ...(logsHandshakes(o) ? [handshakeChainName(o)] : []), ...(answersInKernel(o) ? [answerChainName(o)] : [])];
}

/** Every chain of ours in the filter table whatever the options: `remove` and a change of options drop the ones not in use. */
function filterChains(o: RulesOptions): string[] {
  return [chainName(o), handshakeChainName(o), answerChainName(o)];
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
  const answer = answersInKernel(o) ? m.answer! : 0;
  const saved = savedMask(o);
  const queue = o.queues[0] === o.queues[1]
    ? ['--queue-num', String(o.queues[0])]
    : ['--queue-balance', `${o.queues[0]}:${o.queues[1]}`];
  const reset = ['-j', 'REJECT', '--reject-with', 'tcp-reset'];
  const rules: string[][] = [
    // Packets conntrack finds invalid (outside the window, bad state) are dropped before anyone inspects them.
    ['-p', 'tcp', '-m', 'conntrack', '--ctstate', 'INVALID', '-j', 'DROP'],
    // A packet coming back with a verdict (NF_REPEAT and a mark) goes on to the save below even on
    // an allowed connection: the rules' answer chain may have allowed it while the engine still
    // decided a packet of it (a second hello), and a block must replace that allow.
    ['-p', 'tcp', '-m', 'connmark', '--mark', mm(m.allow), '-m', 'mark', '--mark', mm(0), '-j', 'ACCEPT'],
    ['-p', 'tcp', '-m', 'connmark', '--mark', mm(m.block), ...reset],
    // On a gateway without --rpfilter only packets the guard vouched for (answerGuardRules).
    ...(answer !== 0
      ? [['-p', 'tcp', '-m', 'connmark', '--mark', `${hex((m.inspect | answer) >>> 0)}/${saved}`,
        ...(guardsAnswers(o) ? ['-m', 'mark', '--mark', `${hex(answer)}/${hex(answer)}`] : []),
        '-m', 'conntrack', '--ctdir', 'REPLY', '-j', answerChainName(o)]]
      : []),
    ['-p', 'tcp', '-m', 'connmark', '--mark', mm(m.inspect), '-m', 'conntrack', '--ctdir', 'REPLY', '-j', 'ACCEPT'],
    ...pureAckRules(family),
    ...(logsHandshakes(o) ? bareTcpRules(family, '0x07=0x02', ['-j', handshakeChainName(o)]) : []),
    ['-p', 'tcp', '-m', 'mark', '--mark', mm(0), '-j', 'NFQUEUE', ...queue, '--queue-bypass'],
    ['-p', 'tcp', '-j', 'CONNMARK', '--save-mark', '--nfmask', saved, '--ctmask', saved],
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
 * The rules of the answer chain (answersInKernel). After a first ClientHello the flow stays
 * inspected until the client's next record shows no second hello follows (docs/evasion.md 19),
 * a trip through the queue for every TLS connection. A hello the binding let on with the answer
 * mark (connmark inspect + answer) may instead end on the server's answer: the server's packets
 * come here, bare ACKs pass, and the first packet with anything else decides. If its payload
 * starts a TLS handshake record holding a ServerHello (record type 0x16, version major 3,
 * handshake type 2 with a length below 64 KiB, legacy_version major 3) whose random does not
 * start like the HelloRetryRequest constant (CF 21 AD 74), the server has chosen its parameters:
 * no second hello can follow, so the connection is marked allowed (the client's next flight no
 * longer reaches the queue) and the packet copied to the log group with the prefix
 * `flowgate-answer`, which tells the daemon the flow is done. Anything else (a HelloRetryRequest,
 * an alert, not TLS, a FIN or RST) clears the answer bit: the client's next record is read as
 * before. Only the first such packet decides, so a later segment of a HelloRetryRequest cannot;
 * and the binding gives the mark only to a hello whose echoed session id holds no 0x16, so no
 * segment of it can start with bytes the client chose (native/README.md, "The server's answer").
 * Conntrack drops server packets out of its window, and on a gateway a strict reverse-path check
 * keeps a client from sending some in the server's name: `--rpfilter` in the raw table, or else the
 * guard (answerGuardRules). Someone elsewhere who can send packets with the server's address
 * (and knows the connection's numbers, from the client) could still end a hello's inspection with a
 * fake ServerHello; such a helper could as well relay the client's traffic to the blocked name.
 */
export function answerRules(o: RulesOptions, family: 4 | 6): string[][] {
  const m = o.marks;
  const bits = savedMask(o);
  // The TCP payload's offset: IPv4 header length (any options) and TCP data offset; IPv6 with no extension header.
  const [ip, at, off] = family === 4 ? ['', '0>>22&0x3C@12>>26&0x3C@', 0] : ['4>>8&0xFF=6&&', '52>>26&0x3C@', 40];
  const serverHello = `${ip}${at}${off}>>16=0x1603&&${at}${off + 4}>>8&0xFFFF=0x0200&&${at}${off + 8}>>16&0xFF=0x03` +
    `&&${at}${off + 11}=0:0xCF21AD73,0xCF21AD75:0xFFFFFFFF`;
  const allowed = ['-m', 'connmark', '--mark', `${hex(m.allow)}/${bits}`];
  return [
    ...bareTcpRules(family, '0x37=0x10', ['-j', 'ACCEPT']),
    ['-m', 'u32', '--u32', serverHello, '-j', 'CONNMARK', '--set-xmark', `${hex(m.allow)}/${bits}`],
    [...allowed, '-j', 'NFLOG', '--nflog-group', String(o.queues[0]), '--nflog-prefix', ANSWER_LOG_PREFIX],
    [...allowed, '-j', 'ACCEPT'],
    ['-j', 'CONNMARK', '--set-xmark', `${hex(m.inspect)}/${bits}`],
    ['-j', 'ACCEPT'],
  ];
}

/** The prefix of the answer chain's copies (native/src/wire.h kAnswerPrefix). */
export const ANSWER_LOG_PREFIX = 'flowgate-answer';

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
      `inspect requests (mask ${hex(o.marks.mask)})${answersInKernel(o) ? `; ${hex(o.marks.answer!)}: a hello that ends on the server's answer` : ''}`,
    // PREROUTING first: the filter table's answer chain relies on the guard (applyRules).
    ...preroutingSections(o, true),
    '*filter',
    ...chainLines(o, family),
    ...hookChains(o.mode).map((c) => `-I ${c} 1 ${jumpRule(o).join(' ')}`),
    'COMMIT',
    '',
  ];
  return lines.join('\n');
}

/** iptables-restore lines that create (or flush) our chains and fill them. */
function chainLines(o: RulesOptions, family: 4 | 6): string[] {
  const hs = logsHandshakes(o) ? handshakeLogRules(o).map((r) => `-A ${handshakeChainName(o)} ${r.join(' ')}`) : [];
  const ans = answersInKernel(o) ? answerRules(o, family).map((r) => `-A ${answerChainName(o)} ${r.join(' ')}`) : [];
  return [
    ...chainNames(o).map((c) => `:${c} - [0:0]`),
    ...hs,
    ...ans,
    ...chainRules(o, family).map((r) => `-A ${chainName(o)} ${r.join(' ')}`),
  ];
}

/**
 * The PREROUTING sections: the raw table's for `--rpfilter` and the mangle table's answer guard
 * (none without them): each chain created (or flushed) and filled, and with `withJump` the jump to
 * it (applyRules inserts that itself, once).
 */
function preroutingSections(o: RulesOptions, withJump: boolean): string[] {
  const section = (table: string, chain: string, rules: string[][], jump: string[]) => [`*${table}`, `:${chain} - [0:0]`,
    ...rules.map((r) => `-A ${chain} ${r.join(' ')}`), ...(withJump ? [`-I PREROUTING 1 ${jump.join(' ')}`] : []), 'COMMIT'];
  return [
    ...(o.rpfilter === true ? section('raw', rpfilterChainName(o), rpfilterRules(), rpfilterJump(o)) : []),
    ...(guardsAnswers(o) ? section('mangle', answerGuardChainName(o), answerGuardRules(o), answerGuardJump(o)) : []),
  ];
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

/**
 * Installs the rules; running it again leaves exactly one copy. The order keeps every moment
 * between the old rules and the new as safe as either: the PREROUTING chains asked for come first
 * with their jumps, in every family before any filter table changes (the answer chain relies on
 * them), then the filter tables, and only then go the PREROUTING chains no longer asked for
 * (--rpfilter, the answer guard). A family whose answer guard cannot be installed (a kernel
 * without the rpfilter match or the mangle table) goes without the answer chain, which only saves
 * trips through the queue; the warnings returned say so. `--rpfilter` failing is an error.
 */
export async function applyRules(o: RulesOptions): Promise<string[]> {
  const warnings: string[] = [];
  const chosen = new Map<4 | 6, RulesOptions>();
  for (const family of families(o)) {
    let fo = o;
    const sections = preroutingSections(o, false);
    if (sections.length > 0) {
      try {
        await restore(family, sections,
          o.rpfilter === true ? ' (--rpfilter needs the kernel\'s rpfilter match, module ipt_rpfilter or ip6t_rpfilter, and the raw table)' : '');
      } catch (err) {
        if (o.rpfilter === true) throw err;
        fo = { ...o, marks: { ...o.marks, answer: 0 } };
        warnings.push(`${binary(family)}: the answer chain's guard (mangle table, rpfilter match) could not be installed, so ` +
          `this family goes without the answer chain (a TLS connection's record after the hello takes the queue): ${(err as Error).message}`);
      }
    }
    for (const [table, , jump, wanted] of preroutingChains(fo)) if (wanted) await ensureJump(family, table, 'PREROUTING', jump);
    chosen.set(family, fo);
  }
  for (const [family, fo] of chosen) {
    // Chain contents first (created or flushed by the restore), then one jump per built-in chain.
    await restore(family, ['*filter', ...chainLines(fo, family), 'COMMIT'], '');
    for (const chain of hookChains(fo.mode)) await ensureJump(family, 'filter', chain, jumpRule(fo));
    // Applied before with other options (the handshake log, an answer mark): chains no longer jumped to go.
    for (const chain of filterChains(fo)) if (!chainNames(fo).includes(chain)) await dropChain(family, 'filter', chain);
  }
  for (const [family, fo] of chosen) {
    for (const [table, chain, jump, wanted] of preroutingChains(fo)) {
      if (wanted) continue;
      await deleteJumps(family, table, 'PREROUTING', jump);
      await dropChain(family, table, chain);
    }
    if (guardsAnswers(fo)) warnings.push(...await answerBitWarnings(family, fo));
  }
  return warnings;
}

/** A warning for each rule of the family's mangle table that answerBitSetters names (none if it cannot be read). */
async function answerBitWarnings(family: 4 | 6, o: RulesOptions): Promise<string[]> {
  const saved = await runCommand(`${binary(family)}-save`, ['-t', 'mangle']).catch(() => undefined);
  if (saved === undefined || saved.code !== 0) return [];
  return answerBitSetters(saved.stdout, o).map((rule) =>
    `${binary(family)}: the mangle rule '${rule}' can put the answer bit ${hex(o.marks.answer!)} in the mark of a ` +
    'packet the guard did not vouch for, so a client\'s fake ServerHello could end a hello\'s inspection: leave the bit ' +
    'out of that rule (its value, or a restore\'s --mask), or choose another answer bit (marks.answer in the config; ' +
    '0 for none) and apply the rules with `--config`');
}

/**
 * The rules of an `iptables-save -t mangle` dump that can set the answer bit in the mark of a
 * forwarded packet after the guard (answerGuardRules) cleared it: a `CONNMARK --restore-mark`
 * whose masks cover the bit (it copies the bit of every packet of an armed connection, a client's
 * fake among them) or a `MARK` that sets or flips it, in PREROUTING after the jump to the guard, in
 * FORWARD, or in a chain of the user's (which of them PREROUTING or FORWARD reach is not worked
 * out: any is named). Rules before the guard are harmless (it clears the bit), and INPUT, OUTPUT
 * and POSTROUTING never see a forwarded packet before the filter table's FORWARD.
 */
export function answerBitSetters(save: string, o: RulesOptions): string[] {
  const bit = o.marks.answer!;
  const guardJump = `-A PREROUTING ${answerGuardJump(o).join(' ')}`;
  const skipped = [answerGuardChainName(o), 'INPUT', 'OUTPUT', 'POSTROUTING'];
  let afterGuard = false;
  const found: string[] = [];
  for (const line of save.split('\n')) {
    const chain = /^-A (\S+) /.exec(line)?.[1];
    if (chain === undefined || skipped.includes(chain)) continue;
    if (line === guardJump) afterGuard = true;
    else if ((chain !== 'PREROUTING' || afterGuard) && (markBitsSet(line) & bit) !== 0) found.push(line);
  }
  return found;
}

/** The packet mark bits one saved rule may set: a CONNMARK restore's masks, or MARK's value. */
function markBitsSet(line: string): number {
  if (/ -j CONNMARK .*--restore-mark/.test(line)) {
    const mask = (name: string) => Number(new RegExp(` --${name} (0x[0-9a-f]+)`).exec(line)?.[1] ?? 0xffffffff);
    return (mask('nfmask') & mask('ctmask')) >>> 0;
  }
  const xmark = / -j MARK --set-xmark (0x[0-9a-f]+)/.exec(line);
  return xmark === null ? 0 : Number(xmark[1]);
}

/** Feeds iptables-restore --noflush; a failure is ERR_RULES, its message followed by `hint`. */
async function restore(family: 4 | 6, lines: string[], hint: string): Promise<void> {
  const res = await runCommand(binary(family, true), ['-w', '--noflush'], [...lines, ''].join('\n'));
  if (res.code !== 0) throw new FlowgateError('ERR_RULES', `${binary(family, true)} failed: ${res.stderr.trim()}${hint}`);
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
    // The main chain first (it jumps to the others), then the others, which may be there
    // whatever `o` says (rules applied with other options).
    for (const chain of filterChains(o)) await dropChain(family, 'filter', chain);
    for (const [table, chain, jump] of preroutingChains(o)) {
      await deleteJumps(family, table, 'PREROUTING', jump);
      await dropChain(family, table, chain);
    }
  }
}

/** Our PREROUTING chains whatever the options (table, chain, jump), and whether `o` asks for each. */
function preroutingChains(o: RulesOptions): Array<[string, string, string[], boolean]> {
  return [
    ['raw', rpfilterChainName(o), rpfilterJump(o), o.rpfilter === true],
    ['mangle', answerGuardChainName(o), answerGuardJump(o), guardsAnswers(o)],
  ];
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
