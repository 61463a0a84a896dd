// Pooling benchmark runs (bench/lib/pool.ts) and the targets' reading of them (bench/lib/report.ts).
import t from 'tap';
import { gatherRuns, poolRatios, renderPool } from '../../bench/lib/pool.js';
import { evaluateTargets, noQueueReference, type BenchReport, type ConfigResult } from '../../bench/lib/report.js';

const rate = (perSecond: number) => ({ perSecond, requests: perSecond * 5, socketErrors: 0, non2xx: 0 });

function config(key: string, runs: ConfigResult['runs'], extra: Partial<ConfigResult> = {}): ConfigResult {
  return { key, title: key, rules: '-', errors: {}, notes: [], runs, ...extra };
}

/** A fixed sequence in [0, 1), so resampling is repeatable. */
function seeded(seed = 1): () => number {
  let x = seed;
  return () => {
    x = (x * 1103515245 + 12345) % 2147483648;
    return x / 2147483648;
  };
}

t.test('runs of several reports pool by configuration, "none-again" with "none"', async (t) => {
  const a = { configs: [config('none', { bulk: [10, 12], http: [], https: [100] }), config('fg-default', { bulk: [9], http: [], https: [60] })] };
  const b = { configs: [config('none-again', { bulk: [14], http: [], https: [120], httpsSplit: [50] }), config('fg-default', { bulk: [11, 13], http: [], https: [70] })] };
  const runs = gatherRuns([a, b]);
  t.same(runs.get('none')?.get('bulk'), [10, 12, 14]);
  t.same(runs.get('none')?.get('https'), [100, 120]);
  t.same(runs.get('fg-default')?.get('bulk'), [9, 11, 13]);
  t.equal(runs.has('none-again'), false);
  t.equal(runs.get('none')?.has('http'), false, 'a workload with no runs is left out');
  const rows = poolRatios(runs, 500, seeded());
  const bulk = rows.find((r) => r.workload === 'bulk' && r.key === 'fg-default')!;
  t.equal(bulk.ratio, 11 / 12, 'median over median');
  t.equal(bulk.runs, 3);
  t.equal(bulk.noQueueRuns, 3);
  t.ok(bulk.low < bulk.high, 'varied runs give an interval, not a point');
  t.ok(bulk.low >= 9 / 14 && bulk.high <= 13 / 10, 'interval within what any resample can give');
  const https = rows.find((r) => r.workload === 'https' && r.key === 'fg-default')!;
  t.equal(https.ratio, 65 / 110);
  t.notOk(rows.some((r) => r.workload === 'httpsSplit'), 'no split row without runs of the configuration');
  t.match(renderPool(rows), /\| bulk \| fg-default \| 3 \| 3 \| 0\.917 \| /);
});

t.test('constant runs give a point interval', async (t) => {
  const runs = gatherRuns([{ configs: [config('none', { bulk: [10, 10, 10], http: [], https: [] }), config('c', { bulk: [5, 5], http: [], https: [] })] }]);
  const [row] = poolRatios(runs, 100, seeded(7));
  t.same([row!.ratio, row!.low, row!.high], [0.5, 0.5, 0.5]);
});

function report(configs: ConfigResult[]): BenchReport {
  return {
    started: new Date(0), durationS: 1, command: 'test', npm: { ok: true, detail: '' }, configs, profiles: [], findings: [],
    machine: { nproc: 2, cpuModel: 'x', memoryGiB: 1, kernel: 'k', node: 'v20', hostname: 'h' },
    settings: { seconds: 5, runs: 2, warmupSeconds: 1, ttfbRequests: 0, flows: 0, wrk: 'wrk', clientSysctls: [] },
  };
}

t.test('the split-CPU target reads the split runs against both no-queue rows pooled', async (t) => {
  const split = (perSecond: number, busy = [100, 40]) => ({ rate: rate(perSecond), busy });
  const r = report([
    config('none', { bulk: [], http: [], https: [1000], httpsSplit: [1000, 1200] }, { https: rate(1000), httpsSplit: split(1000, [100, 0]) }),
    config('c-rules', { bulk: [], http: [], https: [850], httpsSplit: [950] }, { https: rate(850), httpsSplit: split(950, [100, 7]) }),
    config('fg-default', { bulk: [], http: [], https: [600], httpsSplit: [900] }, { https: rate(600), httpsSplit: split(900) }),
    config('none-again', { bulk: [], http: [], https: [1000], httpsSplit: [800, 1000] }, { https: rate(1000), httpsSplit: split(1000, [100, 1]) }),
  ]);
  t.equal(noQueueReference(r)?.httpsSplit?.rate.perSecond, 1000, 'median of the four no-queue split runs');
  const targets = evaluateTargets(r);
  const shared = targets.find((x) => x.issue === '2' && /^default rules: new HTTPS conn\/s/.test(x.what))!;
  t.equal(shared.measured, '0.600x');
  t.equal(shared.met, false);
  const own = targets.find((x) => x.issue === '2' && /CPU of its own/.test(x.what))!;
  t.equal(own.measured, '0.900x');
  t.equal(own.met, true);
  t.equal(own.ceiling, '0.950x', 'the C decider beside it');
  t.equal(own.profile, undefined, 'nothing to profile twice');
});

t.test('without split runs the split target is not measured, not missed', async (t) => {
  const r = report([config('none', { bulk: [], http: [], https: [1000] }, { https: rate(1000) }),
    config('fg-default', { bulk: [], http: [], https: [900] }, { https: rate(900) })]);
  const own = evaluateTargets(r).find((x) => /CPU of its own/.test(x.what))!;
  t.equal(own.measured, undefined);
  t.equal(own.met, undefined);
});
