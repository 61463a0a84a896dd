/**
 * `node dist/bench/pool.js bench/out/<run>/results.json...`: pools the throughput runs of several
 * gateway benchmark runs. Per configuration and workload: every run of every file, the ratio of
 * the medians to the no-queue rows' pooled runs, and a 90% bootstrap interval for that ratio
 * (4000 resamples of both sides). One run's five iperf3 streams spread 9-21 Gbit/s on a shared
 * machine; this says how far a ratio can be trusted. A Markdown table on stdout.
 */
import { readFileSync } from 'node:fs';
import { gatherRuns, poolRatios, renderPool } from './lib/pool.js';
import type { ConfigResult } from './lib/report.js';

function read(file: string): { configs: ConfigResult[] } {
  let report: { configs?: unknown };
  try {
    report = JSON.parse(readFileSync(file, 'utf8')) as { configs?: unknown };
  } catch (err) {
    throw new Error(`${file}: ${err instanceof Error ? err.message.replace(/\s+/g, ' ') : String(err)}`);
  }
  if (!Array.isArray(report.configs)) throw new Error(`${file}: not a gateway benchmark results.json (no configs)`);
  return report as { configs: ConfigResult[] };
}

const files = process.argv.slice(2);
if (files.length === 0) {
  process.stderr.write('usage: node dist/bench/pool.js bench/out/<run>/results.json...\n');
  process.exit(2);
}
try {
  process.stdout.write(`${renderPool(poolRatios(gatherRuns(files.map(read))))}\n`);
} catch (err) {
  process.stderr.write(`pool: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}
