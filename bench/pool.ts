/**
 * `node dist/bench/pool.js bench/out/<run>/results.json...`: pools the throughput runs of several
 * gateway benchmark runs. Per configuration and workload: every run of every file, the ratio of
 * the medians to the no-queue rows' pooled runs, and a 90% bootstrap interval for that ratio
 * (4000 resamples of both sides). One run's five iperf3 streams spread 9-21 Gbit/s on a shared
 * machine; this says how far a ratio can be trusted.
 */
import { readFileSync } from 'node:fs';
import { median } from './lib/measure.js';
import type { ConfigResult } from './lib/report.js';

type Workload = 'bulk' | 'http' | 'https' | 'httpsSplit';
const WORKLOADS: Workload[] = ['bulk', 'http', 'https', 'httpsSplit'];
const RESAMPLES = 4000;

/** Runs by configuration key ("none-again" counted as "none") and workload. */
function gather(files: string[]): Map<string, Map<Workload, number[]>> {
  const out = new Map<string, Map<Workload, number[]>>();
  for (const file of files) {
    let report: { configs?: ConfigResult[] };
    try {
      report = JSON.parse(readFileSync(file, 'utf8')) as { configs?: ConfigResult[] };
    } catch (err) {
      throw new Error(`${file}: ${err instanceof Error ? err.message.replace(/\s+/g, ' ') : String(err)}`);
    }
    if (!Array.isArray(report.configs)) throw new Error(`${file}: not a gateway benchmark results.json (no configs)`);
    for (const c of report.configs) {
      const key = c.key === 'none-again' ? 'none' : c.key;
      if (!out.has(key)) out.set(key, new Map());
      for (const w of WORKLOADS) {
        const xs = c.runs?.[w] ?? [];
        if (xs.length > 0) out.get(key)!.set(w, [...(out.get(key)!.get(w) ?? []), ...xs]);
      }
    }
  }
  return out;
}

/** A resample with replacement. */
function resample(xs: readonly number[]): number[] {
  return xs.map(() => xs[Math.floor(Math.random() * xs.length)]!);
}

function main(): void {
  const files = process.argv.slice(2);
  if (files.length === 0) {
    process.stderr.write('usage: node dist/bench/pool.js bench/out/<run>/results.json...\n');
    process.exit(2);
  }
  let runs: Map<string, Map<Workload, number[]>>;
  try {
    runs = gather(files);
  } catch (err) {
    process.stderr.write(`pool: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
  const lines = ['| workload | configuration | runs | no-queue runs | x no queue (medians) | 90% interval |', '| --- | --- | ---: | ---: | ---: | --- |'];
  for (const w of WORKLOADS) {
    const base = runs.get('none')?.get(w);
    if (base === undefined) continue;
    for (const [key, byWorkload] of runs) {
      const xs = byWorkload.get(w);
      if (key === 'none' || xs === undefined) continue;
      const qs: number[] = [];
      for (let i = 0; i < RESAMPLES; i++) qs.push(median(resample(xs)) / median(resample(base)));
      qs.sort((a, b) => a - b);
      const lo = qs[Math.floor(0.05 * RESAMPLES)]!;
      const hi = qs[Math.floor(0.95 * RESAMPLES)]!;
      lines.push(`| ${w} | ${key} | ${xs.length} | ${base.length} | ${(median(xs) / median(base)).toFixed(3)} | ${lo.toFixed(3)} - ${hi.toFixed(3)} |`);
    }
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

main();
