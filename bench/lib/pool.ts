/**
 * Pooling the throughput runs of several gateway benchmark runs (bench/pool.ts): the ratio of
 * medians to the pooled no-queue runs, with a bootstrap interval.
 */
import { median } from './measure.js';
import type { ConfigResult } from './report.js';

export type Workload = 'bulk' | 'http' | 'https' | 'httpsSplit';
export const WORKLOADS: readonly Workload[] = ['bulk', 'http', 'https', 'httpsSplit'];

/** Runs by configuration key and workload; "none-again" counts as "none". */
export type PooledRuns = Map<string, Map<Workload, number[]>>;

export function gatherRuns(reports: ReadonlyArray<{ configs: readonly ConfigResult[] }>): PooledRuns {
  const out: PooledRuns = new Map();
  for (const report of reports) {
    for (const c of report.configs) {
      const key = c.key === 'none-again' ? 'none' : c.key;
      if (!out.has(key)) out.set(key, new Map());
      const byWorkload = out.get(key)!;
      for (const w of WORKLOADS) {
        const xs = c.runs?.[w] ?? [];
        if (xs.length > 0) byWorkload.set(w, [...(byWorkload.get(w) ?? []), ...xs]);
      }
    }
  }
  return out;
}

/** One configuration's pooled ratio to no queue for one workload. */
export interface PooledRatio {
  workload: Workload;
  key: string;
  runs: number;
  noQueueRuns: number;
  /** Median of the configuration's runs over the median of the no-queue runs. */
  ratio: number;
  /** 90% bootstrap interval of that ratio. */
  low: number;
  high: number;
}

/** Every configuration with runs of a workload the no-queue rows also ran; `random` in [0, 1). */
export function poolRatios(runs: PooledRuns, resamples = 4000, random: () => number = Math.random): PooledRatio[] {
  const resample = (xs: readonly number[]) => xs.map(() => xs[Math.floor(random() * xs.length)]!);
  const out: PooledRatio[] = [];
  for (const workload of WORKLOADS) {
    const base = runs.get('none')?.get(workload);
    if (base === undefined) continue;
    for (const [key, byWorkload] of runs) {
      const xs = byWorkload.get(workload);
      if (key === 'none' || xs === undefined) continue;
      const qs: number[] = [];
      for (let i = 0; i < resamples; i++) qs.push(median(resample(xs)) / median(resample(base)));
      qs.sort((a, b) => a - b);
      out.push({
        workload, key, runs: xs.length, noQueueRuns: base.length, ratio: median(xs) / median(base),
        low: qs[Math.floor(0.05 * resamples)]!, high: qs[Math.min(resamples - 1, Math.floor(0.95 * resamples))]!,
      });
    }
  }
  return out;
}

export function renderPool(rows: readonly PooledRatio[]): string {
  return ['| workload | configuration | runs | no-queue runs | x no queue (medians) | 90% interval |', '| --- | --- | ---: | ---: | ---: | --- |',
    ...rows.map((r) => `| ${r.workload} | ${r.key} | ${r.runs} | ${r.noQueueRuns} | ${r.ratio.toFixed(3)} | ${r.low.toFixed(3)} - ${r.high.toFixed(3)} |`),
  ].join('\n');
}
