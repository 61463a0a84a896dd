/**
 * `npm run bench` (as root): the gateway benchmark of issues 2 and 7. One run builds one
 * client - gateway - server namespace path and measures each configuration in turn: no queue;
 * conntrack only; the C accept loop and the npm `nfqueue` binding with every TCP packet
 * queued; flowgate with its default rules, with every packet queued, and with a policy that
 * answers after 50 ms; no queue again. Then 10,000 flows paused at once, and profiles of the
 * daemon where a target was missed. Writes bench/RESULTS.md (its own section) and the raw
 * numbers and profiles to bench/out/. Progress goes to stderr. See bench/README.md.
 *
 * Settings (environment): BENCH_SECONDS (5) per iperf3/wrk run, BENCH_RUNS (5) rounds, in each of
 * which every configuration in turn runs iperf3 and both wrk workloads once (the median run is reported), BENCH_TTFB (200) requests per
 * TTFB series, BENCH_FLOWS (10000) paused flows, BENCH_ONLY (comma-separated configuration
 * keys), BENCH_PROFILE (auto | always | never), BENCH_LIMIT_S (2100) hard time limit.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import {
  checkPrerequisites, cleanupStale, createTopology, curl, listNamespaces, readQueueStats, repoRoot, startNginx, waitUntil,
  type NginxServer, type Topology,
} from '../test/e2e/harness/index.js';
import { applyRules } from '../test/e2e/flowgate.js';
import { DEFAULT_MARKS } from '../src/verdict/sink.js';
import {
  clearRules, gwIptables, startCLoop, startFlowgateDaemon, startNpmNfqueue, type FilterProcess,
} from './lib/filters.js';
import { installHosts, removeStaleHosts } from './lib/hosts.js';
import {
  bulk, CLIENT_SYSCTLS, connRate, HOST, quantile, REFERENCE_PORTS, REFERENCE_RULE, startIperfServer, ttfb, tuneClient, WRK_CONNECTIONS,
  WRK_THREADS, type Bulk, type Rate,
} from './lib/measure.js';
import { ensureNpmNfqueue, NFQUEUE_PREFIX, type NpmBinding } from './lib/npm.js';
import { pausedFlows } from './lib/paused.js';
import { busyPercent, cpuSeconds, cpuTimes, machine, memoryMb, pinProcess } from './lib/procfs.js';
import { profileDaemon, type ProfileSummary } from './lib/profile.js';
import { evaluateTargets, renderReport, writeResults, type BenchReport, type ConfigResult, type Target } from './lib/report.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
/**
 * Rounds: in each, every configuration in turn runs each throughput workload once; the median run
 * is reported. One 5 s iperf3 stream on this machine ranged from 9 to 24 Gbit/s, and in slow
 * minutes every run of whichever configuration was measured then came out low.
 */
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
/** Unmeasured wrk seconds (HTTPS, then HTTP) after each start. */
const WARMUP_SECONDS = 1;
/**
 * The configurations that also run the split-CPU HTTPS workload (splitHttps): the endpoints on
 * CPU 0, the filter on CPU 1, as on a gateway with a CPU of its own.
 */
const SPLIT_KEYS = new Set(['none', 'c-rules', 'fg-default', 'none-again']);
const TTFB_REQUESTS = Number(process.env.BENCH_TTFB ?? 200);
const FLOWS = Number(process.env.BENCH_FLOWS ?? 10000);
const ONLY = process.env.BENCH_ONLY?.split(',').map((s) => s.trim()).filter((s) => s !== '');
const PROFILE = process.env.BENCH_PROFILE ?? 'auto';
const LIMIT_S = Number(process.env.BENCH_LIMIT_S ?? 2100);

const log = (s: string) => process.stderr.write(`bench: ${s}\n`);
const message = (err: unknown) => (err instanceof Error ? err.message : String(err)).split('\n')[0]!.slice(0, 300);

/** The one-rule policy of the "default rules" and "every packet" configurations. */
const BLOCK_ONE = `default: allow
rules:
  - name: no-blocked
    action: block
    domains: [blocked.test]
`;

/** The 50 ms policy module's source. */
const SLOW_MODULE = `// Answers allow after 50 ms (blocked.test: block), like a remote policy service.
export async function decide(info) {
  await new Promise((r) => setTimeout(r, 50));
  return { verdict: (info.sni ?? info.host) === 'blocked.test' ? 'block' : 'allow', reason: 'slow50' };
}
`;

/** Every TCP packet queued once, no connmark bypass; flowgate's repeated packets carry its mark and pass. */
async function everyPacketRules(topo: Topology): Promise<void> {
  await gwIptables(topo, '-A', 'FORWARD', '-p', 'tcp', '-m', 'mark', '--mark', '0x0/0x300', '-j', 'NFQUEUE', '--queue-num', '0');
  await gwIptables(topo, '-A', 'FORWARD', '-p', 'tcp', '-m', 'mark', '--mark', '0x200/0x300', '-j', 'REJECT', '--reject-with', 'tcp-reset');
}

/** The plain rule the reference filters run with: every TCP packet queued. */
async function plainQueueRule(topo: Topology): Promise<void> {
  await gwIptables(topo, '-A', 'FORWARD', '-p', 'tcp', '-j', 'NFQUEUE', '--queue-num', '0');
}

/** One configuration: its gateway rules and filter. */
interface ConfigDef {
  key: string;
  title: string;
  rules: string;
  /** Why it cannot run here, if it cannot. */
  unavailable?: () => string | undefined;
  /** Installs the rules and starts the filter (undefined: no filter process). */
  start: (topo: Topology) => Promise<FilterProcess | undefined>;
  /** flowgate's config, for profiling this configuration again. */
  yaml?: (topo: Topology) => string;
  rulesOnly?: (topo: Topology) => Promise<void>;
}

function configurations(npm: NpmBinding, cLoop: string | undefined): ConfigDef[] {
  const slowYaml = (topo: Topology) => {
    const mod = join(topo.tmpDir, 'slow50.mjs');
    writeFileSync(mod, SLOW_MODULE);
    return `default: allow\ndecision_timeout_ms: 2000\ndecide:\n  module: ${mod}\n`;
  };
  return [
    { key: 'none', title: 'no queue', rules: 'none (FORWARD empty, policy ACCEPT; conntrack not loaded in gw)', start: async () => undefined },
    {
      key: 'conntrack',
      title: 'conntrack only (reference)',
      rules: '`-p tcp -m conntrack --ctstate INVALID -j DROP`, `-p tcp -m connmark --mark 0x100/0x300 -j ACCEPT`: '
        + 'nothing queued; what conntrack and the first rules of flowgate\'s chain cost by themselves',
      start: async (topo) => {
        await gwIptables(topo, '-A', 'FORWARD', '-p', 'tcp', '-m', 'conntrack', '--ctstate', 'INVALID', '-j', 'DROP');
        await gwIptables(topo, '-A', 'FORWARD', '-p', 'tcp', '-m', 'connmark', '--mark', '0x100/0x300', '-j', 'ACCEPT');
        return undefined;
      },
    },
    {
      key: 'c',
      title: 'C loop, every packet queued',
      rules: '`-A FORWARD -p tcp -j NFQUEUE --queue-num 0`; bench/c-accept (GSO on, queue length 65536, one batch verdict per burst)',
      unavailable: () => cLoop,
      start: async (topo) => {
        const f = await startCLoop(topo);
        await plainQueueRule(topo);
        return f;
      },
    },
    {
      key: 'c-rules',
      title: 'C decider, flowgate\'s rules',
      rules: '`flowgate rules apply`; bench/c-accept `--data-mark 0x100 --log-group 0`: accepts packets without payload and '
        + 'allows each flow on its first data packet (repeat with the allow mark), with no inspection at all, and reads the '
        + 'handshakes the rules log to NFLOG group 0: what flowgate\'s rule layout costs by itself, the best flowgate could do',
      unavailable: () => cLoop,
      start: async (topo) => {
        await applyRules(topo);
        return startCLoop(topo, ['--data-mark', String(DEFAULT_MARKS.allow), '--log-group', '0']);
      },
    },
    {
      key: 'npm',
      title: 'npm nfqueue 0.3.2, every packet queued',
      rules: '`-A FORWARD -p tcp -j NFQUEUE --queue-num 0`; bench/scripts/nfqueue-accept.cjs (one verdict per packet; '
        + 'no GSO flag, default queue length 1024, 8 MiB socket buffer)',
      unavailable: () => (npm.ok ? undefined : `the binding did not install: ${npm.detail}`),
      start: async (topo) => {
        const f = await startNpmNfqueue(topo, NFQUEUE_PREFIX);
        await plainQueueRule(topo);
        return f;
      },
    },
    {
      key: 'fg-default',
      title: 'flowgate, default rules',
      rules: '`flowgate rules apply` (chain FLOWGATE: decided flows bypass the queue by connmark; FLOWGATE_ANS: a plain hello\'s inspection ends on the server\'s ServerHello, iptables/README.md); policy: one rule blocking blocked.test',
      yaml: () => BLOCK_ONE,
      rulesOnly: (topo) => applyRules(topo),
      start: async (topo) => {
        await applyRules(topo);
        return startFlowgateDaemon(topo, BLOCK_ONE, { name: 'fg-default' });
      },
    },
    {
      key: 'fg-every',
      title: 'flowgate, every packet queued',
      rules: '`-p tcp -m mark --mark 0x0/0x300 -j NFQUEUE --queue-num 0` then `-p tcp -m mark --mark 0x200/0x300 -j REJECT`: '
        + 'every TCP packet is queued once, no connmark bypass (the mark guard is needed: see Findings); same one-rule policy',
      yaml: () => BLOCK_ONE,
      rulesOnly: (topo) => everyPacketRules(topo),
      start: async (topo) => {
        await everyPacketRules(topo);
        return startFlowgateDaemon(topo, BLOCK_ONE, { name: 'fg-every' });
      },
    },
    {
      key: 'fg-slow',
      title: 'flowgate, policy answers after 50 ms',
      rules: '`flowgate rules apply`; `decide: {module}` answering after 50 ms, for every TLS hello and HTTP request',
      yaml: slowYaml,
      rulesOnly: (topo) => applyRules(topo),
      start: async (topo) => {
        await applyRules(topo);
        return startFlowgateDaemon(topo, slowYaml(topo), { name: 'fg-slow' });
      },
    },
    { key: 'none-again', title: 'no queue (again, at the end)', rules: 'none: the first row measured again, to show the noise', start: async () => undefined },
  ];
}

/** One configuration's results, gathered over the rounds. */
interface Gathered {
  def: ConfigDef;
  result: ConfigResult;
  bulk: Bulk[];
  http: Rate[];
  https: Rate[];
  cpu: { bulk: number[]; http: number[]; https: number[] };
  split: Array<{ rate: Rate; busy: number[] }>;
  /** The filter's stdout of every round (flowgate's decision events). */
  stdout: string[];
}

function gathered(def: ConfigDef): Gathered {
  return {
    def, result: { key: def.key, title: def.title, rules: def.rules, errors: {}, notes: [] },
    bulk: [], http: [], https: [], cpu: { bulk: [], http: [], https: [] }, split: [], stdout: [],
  };
}

/** The run with the median value, and every run's value in the order measured. */
function medianRun<T>(all: T[], value: (x: T) => number): { median?: T; values: number[] } {
  const sorted = [...all].sort((a, b) => value(a) - value(b));
  return { median: sorted[Math.floor((sorted.length - 1) / 2)], values: all.map(value) };
}

/** The per-configuration result once every round has run. */
function finish(g: Gathered): ConfigResult {
  const r = g.result;
  if (r.skipped !== undefined) return r;
  const bulkRuns = medianRun(g.bulk, (x) => x.gbps);
  const httpRuns = medianRun(g.http, (x) => x.perSecond);
  const httpsRuns = medianRun(g.https, (x) => x.perSecond);
  r.bulk = bulkRuns.median;
  r.http = httpRuns.median;
  r.https = httpsRuns.median;
  r.runs = { bulk: bulkRuns.values, http: httpRuns.values, https: httpsRuns.values };
  if (g.split.length > 0) {
    const splitRuns = medianRun(g.split, (x) => x.rate.perSecond);
    r.httpsSplit = splitRuns.median;
    r.runs.httpsSplit = splitRuns.values;
  }
  const mean = (xs: number[]) => (xs.length === 0 ? undefined : xs.reduce((a, x) => a + x, 0) / xs.length);
  if (g.cpu.bulk.length > 0) r.cpu = { ...r.cpu, bulk: mean(g.cpu.bulk), http: mean(g.cpu.http), https: mean(g.cpu.https) };
  if (g.stdout.some((out) => out.includes('"type":"decision"'))) r.heldMs = heldStats(g.stdout.join('\n'));
  return r;
}

/**
 * One round of one configuration: its rules and filter, a short unmeasured warm-up, one run of
 * each throughput workload; in the last round also the time to first byte and the checks.
 * Configurations take turns round by round, so a slow minute of this shared machine falls on
 * one run of each configuration instead of on every run of one.
 */
async function runRound(topo: Topology, nginx: NginxServer, g: Gathered, round: number, last: boolean): Promise<void> {
  const { def } = g;
  const r = g.result;
  if (r.skipped !== undefined) return;
  const skip = def.unavailable?.();
  if (skip !== undefined) {
    log(`${def.title}: skipped: ${skip}`);
    r.skipped = skip;
    return;
  }
  log(`== round ${round}: ${def.title}`);
  const step = async <T>(name: string, fn: () => Promise<T>): Promise<T | undefined> => {
    log(`${def.title}: ${name}`);
    try {
      return await fn();
    } catch (err) {
      r.errors[name] = message(err);
      log(`${def.title}: ${name} failed: ${r.errors[name]}`);
      return undefined;
    }
  };
  await clearRules(topo);
  let filter: FilterProcess | undefined;
  try {
    try {
      filter = await def.start(topo);
    } catch (err) {
      r.errors[`start (round ${round})`] = message(err);
      log(`${def.title}: start failed: ${message(err)}`);
      return;
    }
    const pid = filter?.pid;
    // NaN once the process is gone: its runs' CPU then shows as "-", not as a negative time.
    const cpu = () => (pid === undefined ? NaN : cpuSeconds(pid) ?? NaN);
    // A fresh filter's JavaScript is not compiled yet, and nginx's workers are cold: the same
    // second of wrk for every configuration, not counted.
    await connRate(topo, 'https', WARMUP_SECONDS).catch(() => undefined);
    await connRate(topo, 'http', WARMUP_SECONDS).catch(() => undefined);
    const c0 = cpu();
    const b = await step('bulk', () => bulk(topo, SECONDS));
    const c1 = cpu();
    const h = await step('http', () => connRate(topo, 'http', SECONDS));
    const c2 = cpu();
    const hs = await step('https', () => connRate(topo, 'https', SECONDS));
    const c3 = cpu();
    if (b !== undefined) g.bulk.push(b);
    if (h !== undefined) g.http.push(h);
    if (hs !== undefined) g.https.push(hs);
    if (pid !== undefined) {
      g.cpu.bulk.push(c1 - c0);
      g.cpu.http.push(c2 - c1);
      g.cpu.https.push(c3 - c2);
    }
    if (SPLIT_KEYS.has(def.key)) {
      const x = await step('https-split', () => splitHttps(topo, nginx, pid));
      if (x !== undefined) g.split.push(x);
    }
    if (!last) return;
    const c4 = cpu();
    // Paired with the reference port, which skips the queue (REFERENCE_RULE, first in FORWARD for the series).
    await gwIptables(topo, '-I', 'FORWARD', '1', ...REFERENCE_RULE);
    r.ttfbHttp = await step('ttfb', () => ttfb(topo, 'http', TTFB_REQUESTS, true));
    r.ttfbHttps = await step('ttfb', () => ttfb(topo, 'https', TTFB_REQUESTS, true));
    await gwIptables(topo, '-D', 'FORWARD', ...REFERENCE_RULE);
    if (pid !== undefined) {
      r.cpu = { ttfb: cpu() - c4 };
      r.peakRssMb = memoryMb(pid)?.peak;
      if (!filter!.proc.running) r.notes.push(`**the filter process exited during the run** (${filter!.proc.tail(300)})`);
    }
    if (filter !== undefined) {
      const q = (await readQueueStats(topo))[0];
      if (q !== undefined) r.queue = { queueDropped: q.queueDropped, userDropped: q.userDropped, lastId: q.lastId };
    }
    if (filter?.status !== undefined && filter.proc.running) await flowgateChecks(topo, def, filter, r);
  } finally {
    // Rules first: nothing may wait on a filter that is going away.
    await clearRules(topo);
    if (filter !== undefined) {
      const out = await filter.stop();
      g.stdout.push(out.stdout);
      if (!last && out.exit.code !== 0 && out.exit.code !== null) r.notes.push(`round ${round}: the filter exited ${out.exit.code}`);
      const counters = filter.status === undefined ? out.stdout.trim().split('\n').pop() : undefined;
      log(`${def.title}: filter stopped (exit ${out.exit.code ?? out.exit.signal})${counters ? `: ${counters}` : ''}`);
    }
  }
}

/**
 * New HTTPS connections with wrk and nginx on CPU 0 and the filter's threads on CPU 1: a gateway
 * whose filter has a CPU of its own instead of sharing two with both endpoints. Affinities are
 * put back before it returns. The kernel's forwarding stays wherever the packet is: on CPU 0,
 * except packets a filter's verdict reinjects, which go on from the filter's CPU.
 */
async function splitHttps(topo: Topology, nginx: NginxServer, filterPid: number | undefined): Promise<{ rate: Rate; busy: number[] }> {
  const all = `0-${os.cpus().length - 1}`;
  if (os.cpus().length < 2) throw new Error('needs two CPUs');
  try {
    pinProcess(nginx.process.pid, '0', true);
    if (filterPid !== undefined) pinProcess(filterPid, '1');
    await connRate(topo, 'https', WARMUP_SECONDS, '0').catch(() => undefined);
    const a = cpuTimes();
    const rate = await connRate(topo, 'https', SECONDS, '0');
    return { rate, busy: busyPercent(a, cpuTimes()) };
  } finally {
    pinProcess(nginx.process.pid, all, true);
    if (filterPid !== undefined) {
      try {
        pinProcess(filterPid, all);
      } catch {
        // the filter exited: reported by the round
      }
    }
  }
}

/** held_ms of the daemon's decision events, by app. */
function heldStats(stdout: string): NonNullable<ConfigResult['heldMs']> {
  const byApp = new Map<string, number[]>();
  for (const line of stdout.split('\n')) {
    if (!line.includes('"type":"decision"')) continue;
    try {
      const d = JSON.parse(line) as { app?: string; held_ms?: number };
      if (typeof d.held_ms !== 'number') continue;
      const app = d.app ?? '?';
      if (!byApp.has(app)) byApp.set(app, []);
      byApp.get(app)!.push(d.held_ms);
    } catch {
      // not an event
    }
  }
  return [...byApp].map(([app, xs]) => {
    xs.sort((a, b) => a - b);
    return { app, n: xs.length, medianMs: quantile(xs, 0.5), p99Ms: quantile(xs, 0.99), maxMs: xs[xs.length - 1]! };
  });
}

/** flowgate's own counters once idle, and that its policy really blocks. */
async function flowgateChecks(topo: Topology, def: ConfigDef, filter: FilterProcess, r: ConfigResult): Promise<void> {
  try {
    if (def.key === 'fg-default' || def.key === 'fg-every') {
      const res = await curl(topo, { url: 'https://blocked.test/', maxTimeMs: 3000 });
      r.notes.push(`https://blocked.test/ -> ${res.errorKind === 'none' ? `HTTP ${res.httpCode}` : res.errorKind}`);
    }
    let s: Record<string, unknown> = {};
    await waitUntil(async () => {
      s = await filter.status!();
      return s.held === 0 && s.received === s.verdicts;
    }, { timeoutMs: 5000, what: 'flowgate idle' }).catch(() => undefined);
    const ev = (s.events ?? {}) as Record<string, number>;
    r.notes.push(`flowgate received ${s.received}, verdicts ${s.verdicts}, held ${s.held} (accepted ${s.accepted}, `
      + `repeated ${s.repeated}, dropped ${s.dropped}); decisions ${s.decisions} ${JSON.stringify(s.by_reason)}`
      + (ev.internal_error ? `; **internal errors: ${ev.internal_error}**` : ''));
    if (s.held !== 0 || s.received !== s.verdicts) r.notes.push('**not settled when idle**');
  } catch (err) {
    r.notes.push(`status failed: ${message(err)}`);
  }
}

/**
 * A plain `-j NFQUEUE` rule with flowgate: its allow verdict is NF_REPEAT with a mark, so with
 * no mark guard the packet is queued again, forever. Measured in a few seconds.
 */
async function probeRepeatLoop(topo: Topology): Promise<string> {
  await clearRules(topo);
  const fg = await startFlowgateDaemon(topo, BLOCK_ONE, { name: 'probe-loop' });
  await plainQueueRule(topo);
  try {
    const res = await curl(topo, { url: 'https://allowed.test/', maxTimeMs: 2000 });
    const s = await fg.status!();
    const looped = res.errorKind !== 'none' || Number(s.received) > 1000;
    return `With a plain \`-A FORWARD -p tcp -j NFQUEUE --queue-num 0\` rule (no mark guard), one HTTPS request `
      + `${res.errorKind === 'none' ? `completed (HTTP ${res.httpCode})` : `failed (${res.errorKind}, ${Math.round(res.wallMs)} ms)`} `
      + `and flowgate received ${s.received} packets, ${s.repeated} of them answered NF_REPEAT. `
      + (looped
        ? 'Packets repeated with flowgate\'s mark came back to the same rule and were queued again: a loop (see Engine.repeat in src/filter/engine.ts).'
        : 'A packet that comes back already carrying the mark flowgate gave it is accepted (dropped for the block mark) instead of '
          + 'repeated again (Engine.repeat in src/filter/engine.ts), so the loop such a rule set used to cause ends after one extra pass.');
  } finally {
    await clearRules(topo);
    await fg.stop();
  }
}

/** Profiles the daemon for each missed target's configuration and workload (at most three). */
async function profiles(topo: Topology, defs: ConfigDef[], targets: Target[], outDir: string): Promise<ProfileSummary[]> {
  if (PROFILE === 'never') return [];
  const wanted = new Map<string, NonNullable<Target['profile']>>();
  for (const t of targets) {
    if (t.profile !== undefined && (PROFILE === 'always' || t.met === false)) wanted.set(`${t.profile.config}/${t.profile.workload}`, t.profile);
  }
  const out: ProfileSummary[] = [];
  // Every missed (configuration, workload) pair: four at most with the targets above, about 20 s each.
  for (const p of wanted.values()) {
    const def = defs.find((d) => d.key === p.config);
    if (def?.yaml === undefined || def.rulesOnly === undefined) continue;
    const title = `${def.title}, ${p.workload === 'bulk' ? 'iperf3 bulk' : `wrk new ${p.workload.toUpperCase()} connections`}`;
    log(`profile: ${title}`);
    try {
      out.push(await profileDaemon(topo, {
        title,
        slug: `${def.key}-${p.workload}`,
        outDir,
        yaml: def.yaml(topo),
        setup: async () => {
          await clearRules(topo);
          await def.rulesOnly!(topo);
        },
        teardown: () => clearRules(topo),
        workload: () => (p.workload === 'bulk' ? bulk(topo, SECONDS) : connRate(topo, p.workload, SECONDS)),
        seconds: SECONDS,
      }));
    } catch (err) {
      out.push({ title, idlePct: 0, byArea: [], top: [], files: [], error: message(err) });
    }
  }
  return out;
}

/** One paragraph per profile: what dominates. */
function analyse(ps: ProfileSummary[]): string[] {
  return ps.map((p) => {
    const areas = p.byArea.slice(0, 4).map((a) => `${a.name} ${a.pct}%`).join(', ');
    const fns = p.top.slice(0, 5).map((f) => `\`${f.name}\` ${f.pct}%`).join(', ');
    const comms = p.perfByProcess?.slice(0, 5).map((c) => `${c.name} ${c.pct}%`).join(', ');
    const dso = p.perfDaemonDso?.slice(0, 4).map((c) => `${c.name} ${c.pct}%`).join(', ');
    const idle = p.idlePct >= 95
      ? ' The daemon is hardly involved here (decided flows bypass the queue): compare with the conntrack-only row, which pays the same kernel cost.'
      : '';
    return `- **${p.title}**: the daemon's main thread was idle ${p.idlePct}% of the workload; its busy time went to ${areas || '-'}; `
      + `hottest functions ${fns || '-'}.${comms ? ` Whole machine (perf, by process): ${comms}.` : ''}`
      + `${dso ? ` The daemon's own samples by DSO: ${dso}.` : ''}${idle}${p.error ? ` (${p.error})` : ''}`;
  });
}

/** Other runs sharing the machine: live fg-* namespaces of other processes, and the load average. */
async function otherActivity(when: string): Promise<string | undefined> {
  const others = new Set<number>();
  for (const name of await listNamespaces()) {
    const m = /^fg-(?:client|gw|server)-(\d+)-/.exec(name);
    if (m === null || Number(m[1]) === process.pid) continue;
    try {
      process.kill(Number(m[1]), 0);
      others.add(Number(m[1]));
    } catch {
      // a dead run's leftovers: cleanupStale() removes them
    }
  }
  const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  if (others.size === 0) return undefined;
  return `${when}: other e2e tests or benchmarks were running (processes ${[...others].join(', ')}; load average ${load}): `
    + 'the numbers are disturbed, run again on a quiet machine';
}

async function main(): Promise<void> {
  const started = new Date();
  const t0 = performance.now();
  setTimeout(() => {
    log(`time limit of ${LIMIT_S} s reached; cleaning up and exiting`);
    process.exit(3);
  }, LIMIT_S * 1000).unref();
  checkPrerequisites(['ip', 'iptables', 'ip6tables', 'sysctl', 'curl', 'iperf3', 'wrk', 'nginx', 'make', 'taskset']);
  const root = repoRoot();
  const stale = await cleanupStale();
  if (stale.length > 0) log(`removed stale namespaces: ${stale.join(', ')}`);
  removeStaleHosts();
  const outDir = join(root, 'bench', 'out', started.toISOString().replace(/[:.]/g, '-'));
  mkdirSync(outDir, { recursive: true });

  let cLoop: string | undefined;
  try {
    execFileSync('make', ['-s', '-C', join(root, 'bench', 'c-accept')], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    cLoop = `make -C bench/c-accept failed: ${message(err)}`;
  }
  log('installing npm nfqueue@0.3.2 into a temporary folder');
  const npm = await ensureNpmNfqueue();
  log(`npm nfqueue: ${npm.detail}`);

  const defs = configurations(npm, cLoop).filter((d) => ONLY === undefined || ONLY.includes(d.key));
  const report: BenchReport = {
    started,
    durationS: 0,
    command: process.env.npm_lifecycle_event === 'bench' ? 'npm run bench' : 'npm run build && node dist/bench/run.js',
    machine: machine(),
    settings: { seconds: SECONDS, runs: RUNS, warmupSeconds: WARMUP_SECONDS, ttfbRequests: TTFB_REQUESTS, flows: FLOWS,
      wrk: `wrk -t ${WRK_THREADS} -c ${WRK_CONNECTIONS} -H 'Connection: close'`, clientSysctls: CLIENT_SYSCTLS },
    npm,
    configs: [],
    profiles: [],
    findings: [],
  };
  const before = await otherActivity('at the start');
  if (before !== undefined) {
    report.findings.push(before);
    log(`warning: ${before}`);
  }
  report.loadBefore = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  const topo = await createTopology();
  try {
    installHosts(topo, [HOST, 'blocked.test']);
    const nginx = await startNginx(topo, { alsoPorts: REFERENCE_PORTS });
    await startIperfServer(topo);
    await tuneClient(topo);
    const all = defs.map(gathered);
    for (let round = 1; round <= RUNS; round++) {
      for (const g of all) await runRound(topo, nginx, g, round, round === RUNS);
    }
    report.configs.push(...all.map(finish));
    const during = await otherActivity('after the configurations');
    if (during !== undefined) {
      report.findings.push(during);
      log(`warning: ${during}`);
    }
    if (ONLY === undefined || ONLY.includes('loop')) {
      log('== probe: flowgate behind a plain NFQUEUE rule');
      report.findings.push(await probeRepeatLoop(topo).catch((err) => `probe of a plain NFQUEUE rule failed: ${message(err)}`));
    }
    if (FLOWS > 0 && (ONLY === undefined || ONLY.includes('paused'))) {
      log(`== ${FLOWS} paused flows`);
      try {
        report.paused = await pausedFlows(topo, FLOWS);
      } catch (err) {
        report.pausedError = message(err);
        log(`paused flows failed: ${report.pausedError}`);
      }
    }
    const targets = evaluateTargets(report);
    report.profiles = await profiles(topo, defs, targets, outDir);
  } finally {
    await topo.destroy();
  }
  report.durationS = (performance.now() - t0) / 1000;
  const targets = evaluateTargets(report);
  const md = renderReport(report, targets, analyse(report.profiles));
  writeResults(join(root, 'bench', 'RESULTS.md'), md);
  writeFileSync(join(outDir, 'results.json'), `${JSON.stringify({ ...report, targets }, null, 2)}\n`);
  log(`done in ${Math.round(report.durationS)} s: bench/RESULTS.md, raw data in ${outDir}`);
  for (const t of targets) log(`  issue ${t.issue}: ${t.what}: ${t.measured ?? 'not measured'} ${t.met === undefined ? '' : t.met ? 'met' : 'MISSED'}`);
}

main().catch((err: unknown) => {
  log(`failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
  process.exitCode = 1;
});
