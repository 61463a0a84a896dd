/**
 * bench/RESULTS.md: the machine, the command, one table per metric with absolute numbers and
 * ratios to "no queue" and to the C loop, the issue targets marked met or missed, the paused
 * flows test and the profiles. The gateway benchmark owns the part of RESULTS.md between its
 * two marker comments and leaves the rest of the file (other benchmarks' sections) alone.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { median, REFERENCE_PORTS, type Bulk, type Rate, type Ttfb } from './measure.js';
import type { PausedResult } from './paused.js';
import type { Machine } from './procfs.js';
import type { ProfileSummary } from './profile.js';

/** Everything measured for one configuration. */
export interface ConfigResult {
  key: string;
  title: string;
  /** What the gateway's rules were. */
  rules: string;
  /** Why it was not measured (e.g. the npm binding did not build). */
  skipped?: string;
  /** The median run of each throughput workload (see `runs` for all of them). */
  bulk?: Bulk;
  http?: Rate;
  https?: Rate;
  /** HTTPS with the endpoints on CPU 0 and the filter on CPU 1 (some configurations): the median run, and each CPU's busy %. */
  httpsSplit?: { rate: Rate; busy: number[] };
  /** Every run's value (Gbit/s, conn/s), in the order measured. */
  runs?: { bulk: number[]; http: number[]; https: number[]; httpsSplit?: number[] };
  ttfbHttp?: Ttfb;
  ttfbHttps?: Ttfb;
  /** Errors of individual workloads, by workload. */
  errors: Record<string, string>;
  /** Filter CPU seconds per phase and run (undefined without a filter process). */
  cpu?: { bulk?: number; http?: number; https?: number; ttfb?: number };
  peakRssMb?: number;
  queue?: { queueDropped: number; userDropped: number; lastId: number };
  /** Checks and counters worth showing (flowgate's received/verdicts, the C loop's counts). */
  notes: string[];
  /** flowgate: `held_ms` of its decision events (first held packet -> decision), by app. */
  heldMs?: Array<{ app: string; n: number; medianMs: number; p99Ms: number; maxMs: number }>;
}

/** A whole run. */
export interface BenchReport {
  started: Date;
  durationS: number;
  command: string;
  machine: Machine;
  settings: { seconds: number; runs: number; warmupSeconds: number; ttfbRequests: number; flows: number; wrk: string; clientSysctls: string[] };
  npm: { ok: boolean; detail: string };
  /** /proc/loadavg (1, 5, 15 min) before the first configuration. */
  loadBefore?: string;
  configs: ConfigResult[];
  paused?: PausedResult;
  pausedError?: string;
  profiles: ProfileSummary[];
  /** Problems found on the way (daemon bugs, workarounds). */
  findings: string[];
}

/** A target from the issues. */
export interface Target {
  issue: string;
  what: string;
  /** The measured value, formatted; undefined when it could not be measured. */
  measured?: string;
  met?: boolean;
  /** The same measure for the C decider on flowgate's rules: what the rule layout allows at best. */
  ceiling?: string;
  /** The configuration and workload to profile when missed. */
  profile?: { config: string; workload: 'bulk' | 'http' | 'https' };
}

const fmt = (x: number | undefined, digits: number) => (x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(digits));
const ratio = (x: number | undefined, ref: number | undefined) =>
  x === undefined || ref === undefined || !Number.isFinite(x) || !Number.isFinite(ref) || ref === 0 ? undefined : x / ref;
const by = (r: BenchReport, key: string) => r.configs.find((c) => c.key === key && c.skipped === undefined);

/**
 * The no-queue reference every ratio and "added" time is taken against: both no-queue rows (the
 * first and the last configuration) pooled. Throughputs are the median of all their runs; TTFB
 * medians the mean of the two rows'. One row alone moved by up to 30% between the start and the
 * end of a run (iperf3 9-24 Gbit/s on the same path), more than most differences measured.
 */
export function noQueueReference(r: BenchReport): ConfigResult | undefined {
  const rows = [by(r, 'none'), by(r, 'none-again')].filter((c): c is ConfigResult => c !== undefined);
  if (rows.length <= 1) return rows[0];
  const pooled = (k: 'bulk' | 'http' | 'https' | 'httpsSplit') => {
    const m = median(rows.flatMap((c) => c.runs?.[k] ?? []));
    return Number.isNaN(m) ? undefined : m;
  };
  const mean = (get: (c: ConfigResult) => number | undefined) => {
    const xs = rows.map(get).filter((x): x is number => x !== undefined);
    return xs.length === 0 ? undefined : xs.reduce((a, b) => a + b, 0) / xs.length;
  };
  const ttfb = (get: (c: ConfigResult) => Ttfb | undefined): Ttfb | undefined => {
    const medianMs = mean((c) => get(c)?.medianMs);
    if (medianMs === undefined) return undefined;
    return { medianMs, p99Ms: mean((c) => get(c)?.p99Ms) ?? NaN, connectMedianMs: mean((c) => get(c)?.connectMedianMs) ?? NaN,
      n: rows.reduce((n, c) => n + (get(c)?.n ?? 0), 0), failed: rows.reduce((n, c) => n + (get(c)?.failed ?? 0), 0) };
  };
  const first = rows[0]!;
  const gbps = pooled('bulk');
  const http = pooled('http');
  const https = pooled('https');
  const split = pooled('httpsSplit');
  return {
    key: 'none-pooled', title: 'no queue (both rows)', rules: first.rules, errors: {}, notes: [],
    bulk: gbps === undefined ? undefined : { gbps, retransmits: NaN },
    http: http === undefined || first.http === undefined ? undefined : { ...first.http, perSecond: http },
    https: https === undefined || first.https === undefined ? undefined : { ...first.https, perSecond: https },
    httpsSplit: split === undefined || first.httpsSplit === undefined
      ? undefined : { ...first.httpsSplit, rate: { ...first.httpsSplit.rate, perSecond: split } },
    ttfbHttp: ttfb((c) => c.ttfbHttp),
    ttfbHttps: ttfb((c) => c.ttfbHttps),
  };
}

/** The targets of issues 2 and 7, evaluated. */
export function evaluateTargets(r: BenchReport): Target[] {
  const none = noQueueReference(r);
  const def = by(r, 'fg-default');
  const everyRow = by(r, 'fg-every');
  const c = by(r, 'c');
  const ceil = by(r, 'c-rules');
  const npm = by(r, 'npm');
  const t: Target[] = [];
  type Get = (x: ConfigResult | undefined) => number | undefined;
  const fmtRatio = (q: number | undefined) => (q === undefined ? undefined : `${q.toFixed(3)}x`);
  const fmtAdded = (d: number | undefined) => (d === undefined || !Number.isFinite(d) ? undefined : `${d >= 0 ? '+' : ''}${d.toFixed(3)} ms`);
  const ratioTarget = (issue: string, what: string, q: number | undefined, min: number, profile: Target['profile'],
    ceiling?: number) => {
    t.push({ issue, what, measured: fmtRatio(q), met: q === undefined ? undefined : q >= min, profile, ceiling: fmtRatio(ceiling) });
  };
  /** flowgate's default rules against no queue (and the C decider's ratio beside it). */
  const rel = (issue: string, what: string, get: Get, min: number, workload: 'bulk' | 'http' | 'https') =>
    ratioTarget(issue, what, ratio(get(def), get(none)), min, { config: 'fg-default', workload }, ratio(get(ceil), get(none)));
  /** Added time to first byte: the paired measure (see ttfb()). */
  const added = (issue: string, what: string, paired: Get, maxMs: number) => {
    const d = paired(def);
    t.push({ issue, what, measured: fmtAdded(d), met: d === undefined || !Number.isFinite(d) ? undefined : d < maxMs,
      profile: { config: 'fg-default', workload: 'https' }, ceiling: fmtAdded(paired(ceil)) });
  };
  /** flowgate with every packet queued against a reference filter, in bulk. */
  const every = (what: string, ref: ConfigResult | undefined, min: number) =>
    ratioTarget('7', what, ratio(bulkOf(everyRow), bulkOf(ref)), min, { config: 'fg-every', workload: 'bulk' });
  const bulkOf: Get = (x) => x?.bulk?.gbps;
  const httpOf: Get = (x) => x?.http?.perSecond;
  const httpsOf: Get = (x) => x?.https?.perSecond;
  const splitOf: Get = (x) => x?.httpsSplit?.rate.perSecond;
  const addedHttp: Get = (x) => x?.ttfbHttp?.pairedAddedMs;
  const addedHttps: Get = (x) => x?.ttfbHttps?.pairedAddedMs;
  rel('2', 'default rules: bulk >= 0.95x no filter', bulkOf, 0.95, 'bulk');
  rel('2', 'default rules: new HTTPS conn/s >= 0.85x no filter', httpsOf, 0.85, 'https');
  ratioTarget('2', 'default rules, the filter on a CPU of its own (wrk and nginx on CPU 0, the filter on CPU 1): new HTTPS conn/s >= 0.85x no filter',
    ratio(splitOf(def), splitOf(none)), 0.85, undefined, ratio(splitOf(ceil), splitOf(none)));
  added('2', 'default rules: added median TTFB < 1 ms (HTTP)', addedHttp, 1);
  added('2', 'default rules: added median TTFB < 1 ms (HTTPS)', addedHttps, 1);
  rel('7', 'default rules: bulk >= 0.97x no queue', bulkOf, 0.97, 'bulk');
  rel('7', 'default rules: new HTTPS conn/s >= 0.9x no queue', httpsOf, 0.9, 'https');
  rel('7', 'default rules: new HTTP conn/s >= 0.8x no queue', httpOf, 0.8, 'http');
  added('7', 'default rules: added median TTFB < 0.3 ms (HTTP)', addedHttp, 0.3);
  added('7', 'default rules: added median TTFB < 0.3 ms (HTTPS)', addedHttps, 0.3);
  every('every packet queued: flowgate bulk >= 0.8x the C loop', c, 0.8);
  every('every packet queued: flowgate bulk >= 10x the npm binding', npm, 10);
  const p = r.paused;
  const pausedOk = p !== undefined && p.paused >= p.flows && p.responses === p.flows && p.heldAfter === 0;
  t.push({
    issue: '7',
    what: `${r.settings.flows.toLocaleString('en-US')} paused flows: RSS < 200 MB (all paused, all released)`,
    measured: p === undefined ? undefined : `RSS ${fmt(p.rssPausedMb * 1.048576, 1)} MB (${fmt(p.rssPausedMb, 1)} MiB), `
      + `peak ${fmt(p.peakRssMb * 1.048576, 1)} MB; `
      + `${p.paused} paused, ${p.responses} answered, held after ${p.heldAfter}`,
    met: p === undefined ? undefined : p.rssPausedMb * 1.048576 < 200 && pausedOk,
  });
  return t;
}

function metricTable(r: BenchReport, title: string, unit: string, get: (c: ConfigResult) => number | undefined, digits: number,
  extra?: { head: string; cell: (c: ConfigResult) => string }): string {
  const base = noQueueReference(r);
  const cl = by(r, 'c');
  const head = `| configuration | ${unit} | x no queue | x C loop |${extra ? ` ${extra.head} |` : ''}`;
  const extraCols = extra ? extra.head.split('|').length : 0;
  const sep = `| --- | ---: | ---: | ---: |${' --- |'.repeat(extraCols)}`;
  const rows = r.configs.map((c) => {
    if (c.skipped !== undefined) return `| ${c.title} | not run: ${c.skipped} | | |${' |'.repeat(extraCols)}`;
    const v = get(c);
    const q0 = ratio(v, base ? get(base) : undefined);
    const qc = ratio(v, cl ? get(cl) : undefined);
    return `| ${c.title} | ${fmt(v, digits)} | ${fmt(q0, 2)} | ${fmt(qc, 2)} |${extra ? ` ${extra.cell(c)} |` : ''}`;
  });
  return `### ${title}\n\n${head}\n${sep}\n${rows.join('\n')}\n`;
}

function runsOf(c: ConfigResult, key: 'bulk' | 'http' | 'https', digits: number): string {
  return c.runs?.[key].map((v) => fmt(v, digits)).join(', ') ?? '-';
}

function errorsOf(c: ConfigResult, ...keys: string[]): string {
  return keys.map((k) => c.errors[k]).filter((e) => e !== undefined).join('; ');
}

function rateExtra(get: (c: ConfigResult) => Rate | undefined, errKey: 'http' | 'https') {
  return {
    head: 'connections | errors | every run',
    cell: (c: ConfigResult) => {
      const x = get(c);
      if (x === undefined) return `- | ${errorsOf(c, errKey) || '-'} | -`;
      return `${x.requests} | ${x.socketErrors + x.non2xx}${c.errors[errKey] ? ` (${c.errors[errKey]})` : ''} | ${runsOf(c, errKey, 0)}`;
    },
  };
}

/** The split-CPU HTTPS runs (bench/run.ts splitHttps), for the configurations that ran them. */
function splitTable(r: BenchReport): string {
  const base = noQueueReference(r)?.httpsSplit?.rate.perSecond;
  const rows = r.configs.filter((c) => c.httpsSplit !== undefined || c.errors['https-split'] !== undefined).map((c) => {
    const x = c.httpsSplit;
    if (x === undefined) return `| ${c.title} | - | - | - | - | ${c.errors['https-split']} |`;
    return `| ${c.title} | ${fmt(x.rate.perSecond, 0)} | ${fmt(ratio(x.rate.perSecond, base), 2)} | ${x.busy.join(' / ')} | `
      + `${x.rate.socketErrors + x.rate.non2xx} | ${c.runs?.httpsSplit?.map((v) => fmt(v, 0)).join(', ') ?? '-'} |`;
  });
  if (rows.length === 0) return '';
  return '### New HTTPS connections per second, the filter on a CPU of its own (median run)\n\n'
    + 'The same wrk workload with wrk and nginx (master and workers) pinned to CPU 0 and the filter\'s threads to CPU 1, '
    + 'as on a gateway whose filter does not share its CPUs with both endpoints. The kernel forwards each packet on the CPU '
    + 'it is on: on CPU 0, except packets a filter\'s verdict reinjects, which go on from the filter\'s thread on CPU 1.\n\n'
    + '| configuration | conn/s | x no queue | busy % per CPU | errors | every run |\n| --- | ---: | ---: | --- | --- | --- |\n'
    + rows.join('\n') + '\n';
}

function ttfbTable(r: BenchReport, scheme: 'HTTP' | 'HTTPS', get: (c: ConfigResult) => Ttfb | undefined): string {
  const base = noQueueReference(r);
  const b = base ? get(base) : undefined;
  const signed = (d: number | undefined) => (d === undefined || !Number.isFinite(d) ? '-' : `${d >= 0 ? '+' : ''}${d.toFixed(3)}`);
  const rows = r.configs.map((c) => {
    if (c.skipped !== undefined) return `| ${c.title} | not run | | | | | | | | |`;
    const x = get(c);
    if (x === undefined) return `| ${c.title} | - | - | - | - | - | - | - | - | ${errorsOf(c, 'ttfb') || '-'} |`;
    const added = b === undefined ? undefined : x.medianMs - b.medianMs;
    const addedConnect = b === undefined ? undefined : x.connectMedianMs - b.connectMedianMs;
    return `| ${c.title} | ${fmt(x.medianMs, 3)} | ${fmt(x.reference?.medianMs, 3)} | ${signed(x.pairedAddedMs)} | ${signed(added)} | `
      + `${fmt(x.p99Ms, 3)} | ${fmt(x.connectMedianMs, 3)} | ${signed(x.pairedConnectAddedMs)} | ${signed(addedConnect)} | `
      + `${x.n} ok, ${x.failed} failed |`;
  });
  return `### Time to first byte, ${scheme} (curl, ${r.settings.ttfbRequests} sequential new connections, ms)\n\n`
    + '`connect` is curl\'s time_connect (the TCP handshake: SYN and SYN-ACK each cross the gateway once). Each request '
    + `alternates with one to the same nginx on port ${scheme === 'HTTP' ? REFERENCE_PORTS.http : REFERENCE_PORTS.https}, which a rule `
    + 'first in FORWARD keeps out of the queue (conntrack still sees it): "reference" is that series, "added, paired" the '
    + 'median over request pairs of the difference, which the machine\'s drift during a series does not move; "added vs no '
    + 'queue" compares with the no-queue rows, measured minutes apart.\n\n'
    + '| configuration | median | reference median | added, paired | added vs no queue | p99 | connect median | connect added, paired | connect added vs no queue | requests |\n'
    + '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n' + rows.join('\n') + '\n';
}

function costTable(r: BenchReport): string {
  const s = r.settings.seconds;
  const rows = r.configs.filter((c) => c.skipped === undefined && c.cpu !== undefined).map((c) => {
    const cpu = c.cpu!;
    const gb = c.bulk ? (c.bulk.gbps * s) / 8 : undefined;
    const perGb = gb && cpu.bulk !== undefined ? (1000 * cpu.bulk) / gb : undefined;
    const perK = (x: number | undefined, rate: Rate | undefined) => (x !== undefined && rate && rate.requests > 0 ? (1000 * x) / (rate.requests / 1000) : undefined);
    return `| ${c.title} | ${fmt(cpu.bulk, 2)} | ${fmt(perGb, 0)} | ${fmt(cpu.http, 2)} | ${fmt(perK(cpu.http, c.http), 0)} | `
      + `${fmt(cpu.https, 2)} | ${fmt(perK(cpu.https, c.https), 0)} | ${fmt(cpu.ttfb, 2)} | ${fmt(c.peakRssMb, 1)} |`;
  });
  return '### Filter process: CPU time (utime+stime from /proc/PID/stat) and peak RSS (VmHWM)\n\n'
    + '| configuration | bulk CPU s | CPU ms per GB | HTTP CPU s | CPU ms per 1000 conns | HTTPS CPU s | CPU ms per 1000 conns '
    + '| TTFB runs CPU s | peak RSS MiB |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n' + rows.join('\n') + '\n';
}

function heldTable(r: BenchReport): string {
  const rows = r.configs.filter((c) => c.heldMs !== undefined).flatMap((c) => c.heldMs!.map((h) =>
    `| ${c.title} | ${h.app} | ${h.n} | ${fmt(h.medianMs, 3)} | ${fmt(h.p99Ms, 3)} | ${fmt(h.maxMs, 1)} |`));
  if (rows.length === 0) return '';
  return '### flowgate: how long packets waited for their decision (`held_ms` of the decision events, all workloads)\n\n'
    + '| configuration | app | decisions | median ms | p99 ms | max ms |\n| --- | --- | ---: | ---: | ---: | ---: |\n'
    + rows.join('\n') + '\n';
}

function queueTable(r: BenchReport): string {
  const rows = r.configs.filter((c) => c.skipped === undefined && c.queue !== undefined).map((c) =>
    `| ${c.title} | ${c.queue!.lastId} | ${c.queue!.queueDropped} | ${c.queue!.userDropped} |`);
  return '### Kernel queue (/proc/net/netfilter/nfnetlink_queue in gw, at the end of each configuration)\n\n'
    + '| configuration | packets queued (last id) | queue dropped | user dropped |\n| --- | ---: | ---: | ---: |\n'
    + rows.join('\n') + '\n';
}

function pausedSection(r: BenchReport): string {
  if (r.paused === undefined) return `## ${r.settings.flows} paused flows\n\nNot measured: ${r.pausedError ?? 'skipped'}\n`;
  const p = r.paused;
  const rows: Array<[string, string]> = [
    ['connections opened (errors)', `${p.connected} (${p.connectErrors}) in ${p.connectMs} ms`],
    ['flows paused at once (`paused_flows`, max seen)', String(p.paused)],
    ['packets held (flowgate / kernel queue waiting)', `${p.held} / ${p.kernelWaiting}`],
    ['bytes held', String(p.heldBytes)],
    ['flowgate RSS before the connections (VmRSS)', `${fmt(p.rssStartMb, 1)} MiB`],
    ['flowgate RSS with all paused (VmRSS)', `${fmt(p.rssPausedMb, 1)} MiB (${fmt(p.rssPausedMb * 1.048576, 1)} MB); `
      + `${fmt(((p.rssPausedMb - p.rssStartMb) * 1048576) / Math.max(1, p.paused), 0)} bytes per paused flow over the start`],
    ['flowgate peak RSS over the test (VmHWM)', `${fmt(p.peakRssMb, 1)} MiB`],
    ['release -> last response', p.releaseMs === null ? '-' : `${Math.round(p.releaseMs)} ms`],
    ['responses received / client errors', `${p.responses} / ${p.clientErrors}${Object.keys(p.clientCodes).length ? ` ${JSON.stringify(p.clientCodes)}` : ''}`],
    ['after release: held, received == verdicts, kernel waiting', `${p.heldAfter}, ${p.receivedEqualsVerdicts}, ${p.kernelWaitingAfter}`],
    ['kernel queue dropped / user dropped', `${p.queueDropped} / ${p.userDropped}`],
    ['decisions by reason', JSON.stringify(p.byReason)],
  ];
  return `## ${p.flows.toLocaleString('en-US')} paused flows\n\n`
    + 'Default rules; a policy module holds every decision until a release file appears '
    + '(`decision_timeout_ms: 120000`); a Node client opens the connections (256 handshakes at a time) and sends one '
    + 'HTTP request on each; a Node server answers them.\n\n'
    + `| | |\n| --- | --- |\n${rows.map(([a, b]) => `| ${a} | ${b} |`).join('\n')}\n`
    + (p.notes.length ? `\nNotes: ${p.notes.join('; ')}\n` : '');
}

function profileSection(r: BenchReport): string {
  if (r.profiles.length === 0) return '';
  const parts = r.profiles.map((p) => {
    const list = (xs: Array<{ name: string; pct: number }> | undefined) =>
      (xs ?? []).map((x) => `| ${x.pct.toFixed(1)}% | \`${x.name.replace(/\|/g, '\\|')}\` |`).join('\n');
    let s = `### ${p.title}\n\n`;
    if (p.error) s += `Problem: ${p.error}\n\n`;
    s += `V8 CPU profile of the daemon${p.windowed ? ' during the workload' : ' (whole run: the workload window was not found)'}: `
      + `main thread idle ${p.idlePct}% of the time. Busy time by part:\n\n| share of busy | part |\n| ---: | --- |\n${list(p.byArea)}\n\n`;
    s += `Hottest functions (self time, share of busy):\n\n| share | function |\n| ---: | --- |\n${list(p.top)}\n`;
    if (p.perfByProcess) s += `\nperf, whole machine, by process (share of all samples, idle included):\n\n| share | pid:command |\n| ---: | --- |\n${list(p.perfByProcess)}\n`;
    if (p.perfDaemonDso) s += `\nperf, the daemon's samples only, by DSO (kernel time here is mostly the packet's onward path run inside the verdict syscall):\n\n| share | dso |\n| ---: | --- |\n${list(p.perfDaemonDso)}\n`;
    if (p.perfDaemon) s += `\nperf, the daemon's samples only, hottest symbols:\n\n| share | dso, symbol |\n| ---: | --- |\n${list(p.perfDaemon)}\n`;
    return s;
  });
  return `## Profiles of missed targets\n\n${parts.join('\n')}`;
}

/** The Markdown of one run. */
export function renderReport(r: BenchReport, targets: Target[], analysis: string[]): string {
  const m = r.machine;
  const c = (get: (x: ConfigResult) => Rate | undefined, key: 'http' | 'https') => rateExtra(get, key);
  const lines = [
    `# Gateway benchmark (issues 2 and 7)`,
    '',
    `Run ${r.started.toISOString()}, ${Math.round(r.durationS)} s, with \`${r.command}\` as root.`,
    '',
    `Machine: ${m.nproc} CPUs (${m.cpuModel}), ${m.memoryGiB} GiB memory, kernel \`${m.kernel}\`, Node ${m.node}. `
      + `Load average before the run: ${r.loadBefore ?? '?'}. `
      + 'A shared machine: differences of a few percent are noise (compare the two "no queue" rows, and the runs of each). '
      + 'Every "x no queue" ratio and "added" time is taken against both no-queue rows pooled (the median of all their runs; '
      + 'for time to first byte the mean of their two medians), not the first row alone.',
    '',
    `Path: client - gateway - server network namespaces joined by veth pairs (offloads on), built by the e2e harness. `
      + `Servers: nginx (2 workers) on 80/443 and iperf3 in the server namespace. ${r.settings.runs} rounds: in each, every configuration in turn is set up, warmed with ${r.settings.warmupSeconds} s of wrk HTTPS and HTTP (not counted) and runs iperf3 once and each wrk workload once, so a slow minute of the machine falls on one run of each configuration (the median run `
      + `is reported, every run is listed): iperf3 one stream for ${r.settings.seconds} s; wrk \`${r.settings.wrk}\` for `
      + `${r.settings.seconds} s against http://allowed.test/ and https://allowed.test/ (the client namespace resolves the `
      + `name, so SNI and Host carry it; the client namespace has \`${r.settings.clientSysctls.join(' ')}\`, so runs do not `
      + `stall on ports left in TIME_WAIT by earlier runs); filter CPU time is per run; `
      + `${r.settings.ttfbRequests} sequential curl requests each for HTTP and HTTPS.`,
    '',
    '## Configurations',
    '',
    '| configuration | gateway rules and filter |',
    '| --- | --- |',
    ...r.configs.map((x) => `| ${x.title} | ${x.rules} |`),
    '',
    `npm \`nfqueue@0.3.2\`: ${r.npm.detail}`,
    '',
    '## Targets',
    '',
    '"C decider" is the same measure for bench/c-accept deciding every flow on its first data packet behind flowgate\'s own '
      + 'rules, with no inspection: what the rule layout and the kernel queue allow at best. Added time to first byte is '
      + 'the paired measure (each request against one on a port that skips the queue, just before it; see the TTFB tables).',
    '',
    '| issue | target | measured | result | C decider, same rules |',
    '| --- | --- | --- | --- | --- |',
    ...targets.map((t) => `| ${t.issue} | ${t.what} | ${t.measured ?? 'not measured'} | ${t.met === undefined ? '-' : t.met ? 'met' : '**missed**'} | ${t.ceiling ?? '-'} |`),
    '',
    ...(analysis.length ? ['## What dominates where targets are missed', '', ...analysis, ''] : []),
    '## Results',
    '',
    metricTable(r, 'Bulk throughput (iperf3, one stream; median run)', 'Gbit/s', (x) => x.bulk?.gbps, 2, {
      head: 'retransmits | every run', cell: (x) => `${x.bulk ? String(x.bulk.retransmits) : errorsOf(x, 'bulk') || '-'} | ${runsOf(x, 'bulk', 2)}`,
    }),
    metricTable(r, 'New HTTP connections per second (wrk, Connection: close; median run)', 'conn/s', (x) => x.http?.perSecond, 0,
      c((x) => x.http, 'http')),
    metricTable(r, 'New HTTPS connections per second (wrk, Connection: close; median run)', 'conn/s', (x) => x.https?.perSecond, 0,
      c((x) => x.https, 'https')),
    splitTable(r),
    ttfbTable(r, 'HTTP', (x) => x.ttfbHttp),
    ttfbTable(r, 'HTTPS', (x) => x.ttfbHttps),
    costTable(r),
    heldTable(r),
    queueTable(r),
    '### Checks and counters',
    '',
    ...r.configs.filter((x) => x.notes.length > 0).map((x) => `- ${x.title}: ${x.notes.join('; ')}`),
    '',
    pausedSection(r),
    profileSection(r),
    ...(r.findings.length ? ['## Findings', '', ...r.findings.map((f) => `- ${f}`), ''] : []),
  ];
  return lines.join('\n');
}

const BEGIN = '<!-- gateway benchmark (bench/run.ts): begin -->';
const END = '<!-- gateway benchmark (bench/run.ts): end -->';

/** Replaces this benchmark's part of `file` (between the markers), keeping everything else. */
export function writeResults(file: string, markdown: string): void {
  const block = `${BEGIN}\n${markdown.trimEnd()}\n${END}\n`;
  const old = existsSync(file) ? readFileSync(file, 'utf8') : '';
  const a = old.indexOf(BEGIN);
  const b = old.indexOf(END);
  let next: string;
  if (a >= 0 && b > a) next = old.slice(0, a) + block + old.slice(b + END.length).replace(/^\n/, '');
  else if (old.trim() === '') next = block;
  else next = `${block}\n${old}`;
  writeFileSync(file, next);
}
