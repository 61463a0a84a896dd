/**
 * The workloads, run from the client namespace against the server namespace: bulk
 * throughput (iperf3, one stream), new connections per second (wrk, `Connection: close`) and
 * time to first byte (curl, sequential). Each returns numbers, or throws with the tool's
 * output when the tool failed outright.
 */
import type { Topology } from '../../test/e2e/harness/index.js';

/** The names clients use; the client namespace resolves them to the server (see hosts.ts). */
export const HOST = 'allowed.test';

/** Result of one iperf3 run. */
export interface Bulk {
  /** Received by the server, Gbit/s. */
  gbps: number;
  /** TCP retransmissions the sender counted. */
  retransmits: number;
}

/** Starts `iperf3 -s` in the server namespace (stopped when the topology is destroyed). */
export async function startIperfServer(topo: Topology): Promise<void> {
  const proc = topo.spawn('server', ['iperf3', '-s', '--forceflush']);
  await proc.waitForLine(/Server listening/, { timeoutMs: 10_000 });
}

/**
 * The client namespace's TCP settings for connection-rate runs: reuse TIME_WAIT ports for new
 * connections and use the whole port range. With the defaults (28k ports, reuse on loopback
 * only) a 5 s wrk run at 15k conn/s left half the ports in TIME_WAIT, and the next run stalled
 * on port searches and SYN retransmits: the same no-queue run measured 15758 then 5963 conn/s.
 * Set once for every configuration, so no configuration inherits another's ports.
 */
export const CLIENT_SYSCTLS = ['net.ipv4.tcp_tw_reuse=1', 'net.ipv4.ip_local_port_range=1024 65000'];

export async function tuneClient(topo: Topology): Promise<void> {
  await topo.exec('client', ['sysctl', '-qw', ...CLIENT_SYSCTLS], { check: true });
}

/** One iperf3 stream from client to server for `seconds`. */
export async function bulk(topo: Topology, seconds: number): Promise<Bulk> {
  const server = topo.addrs(4).server;
  const res = await topo.exec('client', ['iperf3', '-c', server, '-t', String(seconds), '-J'], { timeoutMs: (seconds + 20) * 1000 });
  let json: { end?: { sum_received?: { bits_per_second?: number }; sum_sent?: { retransmits?: number } }; error?: string };
  try {
    json = JSON.parse(res.stdout);
  } catch {
    throw new Error(`iperf3 printed no JSON (exit ${res.code}): ${res.stderr.trim().slice(0, 300)}`);
  }
  if (json.error !== undefined || json.end?.sum_received?.bits_per_second === undefined) {
    throw new Error(`iperf3 failed: ${json.error ?? 'no result'}`);
  }
  return { gbps: json.end.sum_received.bits_per_second / 1e9, retransmits: json.end.sum_sent?.retransmits ?? 0 };
}

/** Result of one wrk run. */
export interface Rate {
  /** Completed requests per second; with `Connection: close` each is a new connection. */
  perSecond: number;
  requests: number;
  /** wrk's socket error counts (connect, read, write, timeout), summed; responses not 2xx/3xx. */
  socketErrors: number;
  non2xx: number;
}

/** Parses wrk's summary. */
export function parseWrk(out: string): Rate {
  const rate = /Requests\/sec:\s+([\d.]+)/.exec(out);
  if (rate === null) throw new Error(`wrk printed no rate: ${out.trim().slice(0, 300)}`);
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
  const se = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const socketErrors = se === null ? 0 : se.slice(1, 5).reduce((a, x) => a + Number(x), 0);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  return { perSecond: Number(rate[1]), requests, socketErrors, non2xx };
}

/** Workload shape of the connection-rate runs. */
export const WRK_THREADS = 2;
export const WRK_CONNECTIONS = 8;

/** New connections per second to `scheme://allowed.test/` for `seconds` (wrk, Connection: close), on `cpus` if given. */
export async function connRate(topo: Topology, scheme: 'http' | 'https', seconds: number, cpus?: string): Promise<Rate> {
  const res = await topo.exec('client', [...(cpus === undefined ? [] : ['taskset', '-c', cpus]), 'wrk', '-t', String(WRK_THREADS), '-c', String(WRK_CONNECTIONS),
    '-d', `${seconds}s`, '--timeout', '5s', '-H', 'Connection: close', `${scheme}://${HOST}/`], { timeoutMs: (seconds + 30) * 1000 });
  if (res.code !== 0) throw new Error(`wrk exited ${res.code}: ${(res.stderr || res.stdout).trim().slice(0, 300)}`);
  return parseWrk(res.stdout);
}

/** Time to first byte over sequential requests. */
export interface Ttfb {
  medianMs: number;
  p99Ms: number;
  /** Median of curl's time_connect: the TCP handshake (SYN, SYN-ACK). */
  connectMedianMs: number;
  /** Requests that answered 200. */
  n: number;
  /** Requests that did not. */
  failed: number;
  /**
   * With a reference port: every other request went to the same server on a port the gateway
   * does not queue. The reference's own figures, and the median over request pairs of (this
   * request - the reference request just before it): drift of the machine during the series
   * cancels out of the difference.
   */
  reference?: { medianMs: number; p99Ms: number; connectMedianMs: number; n: number };
  pairedAddedMs?: number;
  pairedConnectAddedMs?: number;
}

/** Ports of the reference path: the same nginx, and a gateway rule that lets them skip the queue (see REFERENCE_RULE). */
export const REFERENCE_PORTS = { http: 8080, https: 8443 };

/** The gateway rule (inserted first in FORWARD during a paired TTFB series) that keeps the reference path out of the queue. */
export const REFERENCE_RULE = ['-p', 'tcp', '-m', 'multiport', '--ports', `${REFERENCE_PORTS.http},${REFERENCE_PORTS.https}`, '-j', 'ACCEPT'];

/** Median of unsorted values (the mean of the middle two for an even count); NaN when empty. */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** The q-quantile (0..1) of sorted values, nearest rank. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/**
 * `count` sequential curl requests to `scheme://allowed.test/`, each a new connection;
 * `time_starttransfer` of each (for HTTPS it includes the TLS handshake). With `paired`, as many
 * again to the reference port, alternating (reference first), for `Ttfb.pairedAddedMs`.
 */
export async function ttfb(topo: Topology, scheme: 'http' | 'https', count: number, paired = false): Promise<Ttfb> {
  const port = scheme === 'https' ? 443 : 80;
  const refPort = REFERENCE_PORTS[scheme];
  const server = topo.addrs(4).server;
  const one = (p: number, tag: string) => `curl -sk -o /dev/null --max-time 5 --resolve ${HOST}:${p}:${server} `
    + `-w '${tag} %{http_code} %{time_starttransfer} %{time_connect}\\n' ${scheme}://${HOST}:${p}/; `;
  // One shell in the client namespace runs the loop: no `ip netns exec` per request.
  const script = `i=0; while [ $i -lt ${count} ]; do i=$((i+1)); ${paired ? one(refPort, 'r') : ''}${one(port, 'x')}done`;
  const res = await topo.exec('client', ['sh', '-c', script], { timeoutMs: count * (paired ? 12000 : 6000) + 10_000 });
  const series = { x: [] as Array<[number, number] | undefined>, r: [] as Array<[number, number] | undefined> };
  for (const line of res.stdout.split('\n')) {
    const [tag, code, t, c] = line.trim().split(' ');
    if (tag !== 'x' && tag !== 'r') continue;
    series[tag].push(code === '200' ? [Number(t) * 1000, Number(c) * 1000] : undefined);
  }
  const summary = (xs: Array<[number, number] | undefined>) => {
    const ok = xs.filter((x): x is [number, number] => x !== undefined);
    const times = ok.map((x) => x[0]).sort((a, b) => a - b);
    const connects = ok.map((x) => x[1]).sort((a, b) => a - b);
    return { medianMs: quantile(times, 0.5), p99Ms: quantile(times, 0.99), connectMedianMs: quantile(connects, 0.5), n: ok.length,
      failed: xs.length - ok.length };
  };
  const out: Ttfb = summary(series.x);
  if (paired) {
    const { failed: _failed, ...reference } = summary(series.r);
    void _failed;
    out.reference = reference;
    const diffs = (k: 0 | 1) => series.x.flatMap((x, i) => {
      const r = series.r[i];
      return x === undefined || r === undefined ? [] : [x[k] - r[k]];
    }).sort((a, b) => a - b);
    out.pairedAddedMs = quantile(diffs(0), 0.5);
    out.pairedConnectAddedMs = quantile(diffs(1), 0.5);
  }
  return out;
}
