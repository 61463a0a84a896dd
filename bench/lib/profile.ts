/**
 * Where the daemon's time goes, for targets the benchmark missed: a V8 CPU profile of the
 * daemon (`node --cpu-prof` on dist/src/cli/entry.js) summarised by function and by pipeline
 * stage, and, when `perf` is installed, a system-wide `perf record` over the same workload
 * summarised by process and by the daemon's hottest symbols (JIT names from
 * --perf-basic-prof-only-functions).
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { basename, join } from 'node:path';
import { execArgv, requireBinary, type Topology } from '../../test/e2e/harness/index.js';
import { startFlowgateDaemon } from './filters.js';

/** One line of a flat profile. */
export interface ProfileLine {
  name: string;
  /** Share of the samples in which the daemon was busy (not idle). */
  pct: number;
}

/** A summarised profile of one workload. */
export interface ProfileSummary {
  /** What ran, e.g. `default rules, iperf3`. */
  title: string;
  /** Share of the daemon's samples spent idle (waiting in epoll). */
  idlePct: number;
  /** Busy time by pipeline stage (src/ folder), Node internals, GC, native code. */
  byArea: ProfileLine[];
  /** Hottest functions by self time. */
  top: ProfileLine[];
  /** perf over the whole machine: CPU share by process (pid:command), of all samples. */
  perfByProcess?: ProfileLine[];
  /** perf, the daemon's samples only: by DSO (kernel, node, JIT code, libc, the addon), and hottest symbols. */
  perfDaemonDso?: ProfileLine[];
  perfDaemon?: ProfileLine[];
  /** True when the V8 profile was cut to the workload's time window. */
  windowed?: boolean;
  /** Where the raw files are (bench/out/, not committed). */
  files: string[];
  error?: string;
}

interface CpuProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: CpuProfileNode[];
  /** Microseconds on the monotonic clock (CLOCK_MONOTONIC, as process.hrtime). */
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Which part of the program a profile frame belongs to. */
function area(frame: CpuProfileNode['callFrame']): string {
  const m = /\/dist\/src\/([^/]+)\//.exec(frame.url);
  if (m !== null) return `flowgate src/${m[1]}/`;
  if (frame.url.startsWith('node:')) return 'Node internals (node:*)';
  if (frame.url.includes('/node_modules/')) return `dependency ${/node_modules\/([^/]+)/.exec(frame.url)?.[1]}`;
  if (frame.url === '') {
    if (frame.functionName === '(garbage collector)') return 'garbage collector';
    if (frame.functionName === '(program)') return '(program): V8/native outside JS';
    return 'native functions called from JS (addon, Buffer, ...)';
  }
  return `other JS (${basename(frame.url)})`;
}

const round = (x: number) => Math.round(x * 10) / 10;

/**
 * Summarises a .cpuprofile: idle share, busy time by area, top functions by self time. With
 * `windowUs` ([from, to] in monotonic-clock microseconds) only samples taken inside it count,
 * so start-up (module loading, JIT warm-up) and shutdown stay out.
 */
export function summarizeCpuProfile(path: string, windowUs?: [number, number], topN = 15):
  Pick<ProfileSummary, 'idlePct' | 'byArea' | 'top'> & { windowed: boolean } {
  const prof = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const collect = (win?: [number, number]) => {
    const self = new Map<number, number>();
    let t = prof.startTime;
    // timeDeltas[i] is the time before sample i: attribute it to that sample's frame.
    for (let i = 0; i < prof.samples.length; i++) {
      const dt = Math.max(0, prof.timeDeltas[i] ?? 0);
      t += dt;
      if (win !== undefined && (t < win[0] || t > win[1])) continue;
      self.set(prof.samples[i]!, (self.get(prof.samples[i]!) ?? 0) + dt);
    }
    return self;
  };
  let self = collect(windowUs);
  const windowed = windowUs !== undefined && self.size > 0;
  if (!windowed) self = collect();
  let idle = 0;
  let busy = 0;
  const areas = new Map<string, number>();
  const fns = new Map<string, number>();
  for (const [id, us] of self) {
    const node = byId.get(id);
    if (node === undefined) continue;
    const f = node.callFrame;
    if (f.functionName === '(idle)') {
      idle += us;
      continue;
    }
    busy += us;
    const a = area(f);
    areas.set(a, (areas.get(a) ?? 0) + us);
    const where = f.url === '' ? '' : ` ${f.url.replace(/^.*\/dist\//, 'dist/').replace(/^file:\/\//, '')}:${f.lineNumber + 1}`;
    const name = `${f.functionName || '(anonymous)'}${where}`;
    fns.set(name, (fns.get(name) ?? 0) + us);
  }
  const lines = (m: Map<string, number>, n: number) => [...m].sort((a, b) => b[1] - a[1]).slice(0, n)
    .map(([name, us]) => ({ name, pct: busy > 0 ? round((100 * us) / busy) : 0 }));
  return { idlePct: idle + busy > 0 ? round((100 * idle) / (idle + busy)) : 0, byArea: lines(areas, 12), top: lines(fns, topN), windowed };
}

/** Parses `perf report --stdio` flat output ("  12.34%  name ...") into lines. */
export function parsePerfReport(text: string, topN: number): ProfileLine[] {
  const out: ProfileLine[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*([\d.]+)%\s+(.+?)\s*$/.exec(line);
    if (m === null) continue;
    out.push({ name: m[2]!.replace(/\s+/g, ' '), pct: Number(m[1]) });
    if (out.length >= topN) break;
  }
  return out;
}

/**
 * The lines of a `--sort pid,...` report that belong to `pid`, the pid column dropped and the
 * shares made relative to that process's samples. (`perf report --pid` is not used: the perf
 * of Debian 12 then attributes every sample to the JIT map.)
 */
export function perfLinesOfPid(text: string, pid: number, topN: number): ProfileLine[] {
  const mine = parsePerfReport(text, Number.MAX_SAFE_INTEGER).filter((l) => l.name.startsWith(`${pid}:`))
    .map((l) => ({ name: l.name.replace(/^\d+:\S+\s*/, ''), pct: l.pct }));
  const total = mine.reduce((a, l) => a + l.pct, 0);
  return mine.slice(0, topN).map((l) => ({ name: l.name, pct: total > 0 ? round((100 * l.pct) / total) : 0 }));
}

function perfPath(): string | undefined {
  try {
    return requireBinary('perf');
  } catch {
    return undefined;
  }
}

/**
 * Starts the daemon under `node --cpu-prof` with `yaml`, installs rules with `setup`, records
 * `perf` system-wide while `workload` runs, stops the daemon and summarises both profiles.
 */
export async function profileDaemon(topo: Topology, opts: {
  title: string;
  slug: string;
  outDir: string;
  yaml: string;
  setup: () => Promise<void>;
  teardown: () => Promise<void>;
  workload: () => Promise<unknown>;
  seconds: number;
}): Promise<ProfileSummary> {
  const files: string[] = [];
  const profName = `${opts.slug}.cpuprofile`;
  const summary: ProfileSummary = { title: opts.title, idlePct: 0, byArea: [], top: [], files };
  await opts.setup();
  const fg = await startFlowgateDaemon(topo, opts.yaml, {
    name: `prof-${opts.slug}`,
    nodeFlags: ['--cpu-prof', `--cpu-prof-dir=${opts.outDir}`, `--cpu-prof-name=${profName}`, '--perf-basic-prof-only-functions'],
  });
  const perf = perfPath();
  const perfData = join(opts.outDir, `${opts.slug}.perf.data`);
  let window: [number, number] | undefined;
  try {
    const recording = perf === undefined ? undefined
      : execArgv([perf, 'record', '-a', '-F', '999', '-o', perfData, '--', 'sleep', String(opts.seconds)], { timeoutMs: (opts.seconds + 30) * 1000 });
    const w0 = Number(process.hrtime.bigint() / 1000n);
    await opts.workload();
    window = [w0, Number(process.hrtime.bigint() / 1000n)];
    const rec = await recording;
    if (rec !== undefined && rec.code !== 0) summary.error = `perf record exited ${rec.code}: ${rec.stderr.trim().slice(-200)}`;
  } finally {
    await opts.teardown();
    await fg.stop();
  }
  const prof = join(opts.outDir, profName);
  if (existsSync(prof)) {
    files.push(prof);
    Object.assign(summary, summarizeCpuProfile(prof, window));
  } else {
    summary.error = `${summary.error ?? ''} no CPU profile was written (${prof})`.trim();
  }
  if (perf !== undefined && existsSync(perfData)) {
    files.push(perfData);
    const report = (args: string[]) => execArgv([perf, 'report', '-i', perfData, '--stdio', '--no-children', '-q', ...args],
      { timeoutMs: 120_000 });
    summary.perfByProcess = parsePerfReport((await report(['--sort', 'pid'])).stdout, 10)
      .map((l) => (l.name.startsWith(`${fg.pid}:`) ? { ...l, name: `${l.name} (the daemon)` } : l));
    summary.perfDaemonDso = perfLinesOfPid((await report(['--sort', 'pid,dso'])).stdout, fg.pid, 8);
    summary.perfDaemon = perfLinesOfPid((await report(['--sort', 'pid,dso,sym'])).stdout, fg.pid, 25);
  }
  // The JIT symbol map node wrote for perf (one per daemon pid).
  const map = `/tmp/perf-${fg.pid}.map`;
  if (existsSync(map)) rmSync(map, { force: true });
  return summary;
}
