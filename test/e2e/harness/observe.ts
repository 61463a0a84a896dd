/**
 * Observing the gateway: kernel queue statistics and iptables rule counters, read inside a
 * namespace, plus a small iptables runner for test rules.
 */
import { requireBinary, type ExecResult } from './proc.js';
import type { Family, Role, Topology } from './topology.js';

/** One line of /proc/net/netfilter/nfnetlink_queue. */
export interface QueueStats {
  /** Queue number. */
  queue: number;
  /** Netlink port id of the bound process. */
  portId: number;
  /** Packets waiting for a verdict; must return to 0 when the daemon is idle. */
  waiting: number;
  /** Copy mode (0 none, 1 meta, 2 packet). */
  copyMode: number;
  /** Bytes of each packet copied to user space. */
  copyRange: number;
  /** Packets dropped because the queue was full. */
  queueDropped: number;
  /** Packets dropped because netlink could not deliver them to the process. */
  userDropped: number;
  /** Last packet id handed out. */
  lastId: number;
}

/** Reads the kernel queue statistics of a namespace (default gw); [] when no queue is bound. */
export async function readQueueStats(topo: Topology, role: Role = 'gw'): Promise<QueueStats[]> {
  const res = await topo.exec(role, ['cat', '/proc/net/netfilter/nfnetlink_queue']);
  if (res.code !== 0) return [];
  return parseQueueStats(res.stdout);
}

/** Parses the text of /proc/net/netfilter/nfnetlink_queue. */
export function parseQueueStats(text: string): QueueStats[] {
  const out: QueueStats[] = [];
  for (const line of text.split('\n')) {
    const n = line.trim().split(/\s+/).map(Number);
    if (n.length < 8 || n.some((v) => Number.isNaN(v))) continue;
    out.push({
      queue: n[0]!,
      portId: n[1]!,
      waiting: n[2]!,
      copyMode: n[3]!,
      copyRange: n[4]!,
      queueDropped: n[5]!,
      userDropped: n[6]!,
      lastId: n[7]!,
    });
  }
  return out;
}

/** Packet and byte counters of one rule (or a chain policy). */
export interface RuleCounter {
  packets: number;
  bytes: number;
  /** The rule as iptables-save prints it, without the `-A CHAIN` prefix. */
  spec: string;
  /** The `-j` target, '' when none. */
  target: string;
}

/** Counters of one chain. */
export interface ChainCounters {
  /** Built-in chain policy and its counters; undefined for user chains. */
  policy?: { name: string; packets: number; bytes: number };
  /** Rules in order. */
  rules: RuleCounter[];
}

/** Options for iptablesCounters() and iptables(). */
export interface IptablesOptions {
  /** 4 for iptables, 6 for ip6tables; default 4. */
  family?: Family;
  /** Namespace; default 'gw'. */
  role?: Role;
}

/** Reads the counters of `chain` in `table` (e.g. 'filter', 'FORWARD') with iptables-save -c. */
export async function iptablesCounters(
  topo: Topology,
  table: string,
  chain: string,
  opts: IptablesOptions = {},
): Promise<ChainCounters> {
  const bin = requireBinary(opts.family === 6 ? 'ip6tables-save' : 'iptables-save');
  const res = await topo.exec(opts.role ?? 'gw', [bin, '-c', '-t', table], { check: true });
  return parseIptablesSave(res.stdout, chain);
}

/** Extracts one chain's counters from `iptables-save -c` output. */
export function parseIptablesSave(text: string, chain: string): ChainCounters {
  const result: ChainCounters = { rules: [] };
  for (const line of text.split('\n')) {
    const head = /^:(\S+) (\S+) \[(\d+):(\d+)\]/.exec(line);
    if (head && head[1] === chain && head[2] !== '-') {
      result.policy = { name: head[2]!, packets: Number(head[3]), bytes: Number(head[4]) };
      continue;
    }
    const rule = /^\[(\d+):(\d+)\] -A (\S+)(?: (.*))?$/.exec(line);
    if (rule && rule[3] === chain) {
      const spec = rule[4] ?? '';
      result.rules.push({
        packets: Number(rule[1]),
        bytes: Number(rule[2]),
        spec,
        target: /(?:^|\s)-j (\S+)/.exec(spec)?.[1] ?? '',
      });
    }
  }
  return result;
}

/** Runs iptables (or ip6tables) with `args` in a namespace (default gw); throws on failure. */
export function iptables(topo: Topology, args: readonly string[], opts: IptablesOptions = {}): Promise<ExecResult> {
  const bin = requireBinary(opts.family === 6 ? 'ip6tables' : 'iptables');
  return topo.exec(opts.role ?? 'gw', [bin, '-w', ...args], { check: true });
}
