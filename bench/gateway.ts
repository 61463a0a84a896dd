/**
 * The gateway benchmark (issues 2 and 7): one run, one namespace path, each configuration in
 * turn. Run as root after `npm run build`: `npm run bench` (about 3 minutes).
 *
 * Configurations: no queue; the C accept loop with every TCP packet queued; flowgate with its
 * default rules and a one-rule policy; flowgate inspecting every packet (every TCP packet queued,
 * no bypass); flowgate with a policy that answers after 50 ms.
 * Metrics: bulk throughput (iperf3, one stream), new HTTP and HTTPS connections per second (wrk,
 * Connection: close), time to first byte (curl, median and p99), CPU time and peak RSS of the
 * filter process, kernel queue drops. Results: bench/RESULTS.md.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import os from 'node:os';
import { createTopology, readQueueStats, repoRoot, startNginx, waitUntil, type Topology } from '../test/e2e/harness/index.js';
import { applyRules, cliArgv } from '../test/e2e/flowgate.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const TTFB_REQUESTS = Number(process.env.BENCH_TTFB ?? 200);

interface Result {
  name: string;
  bulkGbps: number;
  httpCps: number;
  httpsCps: number;
  ttfbMedianMs: number;
  ttfbP99Ms: number;
  cpuS?: number;
  rssMb?: number;
  queueDropped?: number;
  userDropped?: number;
}

const log = (s: string) => process.stderr.write(`bench: ${s}\n`);

async function run(topo: Topology, role: 'client' | 'gw' | 'server', argv: string[], timeoutMs = 60000): Promise<string> {
  const r = await topo.exec(role, argv, { timeoutMs });
  if (r.code !== 0) throw new Error(`${argv.join(' ')}: exit ${r.code}: ${r.stderr.slice(0, 300)}`);
  return r.stdout;
}

/** Parses wrk's "Requests/sec:" line. */
function wrkRate(out: string): number {
  const m = /Requests\/sec:\s+([\d.]+)/.exec(out);
  return m ? Number(m[1]) : 0;
}

async function measure(topo: Topology, name: string, filterPid?: number): Promise<Result> {
  const server = topo.addrs(4).server;
  const before = filterPid ? cpuSeconds(filterPid) : 0;
  log(`${name}: iperf3`);
  const iperf = JSON.parse(await run(topo, 'client', ['iperf3', '-c', server, '-t', String(SECONDS), '-J'], 60000));
  const bulkGbps = iperf.end.sum_received.bits_per_second / 1e9;
  log(`${name}: wrk http`);
  const wrkArgs = ['-t', '2', '-c', '16', '-d', `${SECONDS}s`, '-H', 'Connection: close'];
  const httpCps = wrkRate(await run(topo, 'client', ['wrk', ...wrkArgs, `http://${server}:8080/`]));
  log(`${name}: wrk https`);
  const httpsCps = wrkRate(await run(topo, 'client', ['wrk', ...wrkArgs, `https://${server}:8443/`]));
  log(`${name}: ttfb`);
  const script = `for i in $(seq ${TTFB_REQUESTS}); do curl -s -o /dev/null -w '%{time_starttransfer}\\n' http://${server}:8080/; done`;
  const times = (await run(topo, 'client', ['sh', '-c', script], 120000)).trim().split('\n').map((x) => Number(x) * 1000)
    .sort((a, b) => a - b);
  const q = (p: number) => times[Math.min(times.length - 1, Math.floor(p * times.length))]!;
  const r: Result = { name, bulkGbps, httpCps, httpsCps, ttfbMedianMs: q(0.5), ttfbP99Ms: q(0.99) };
  if (filterPid) {
    r.cpuS = cpuSeconds(filterPid) - before;
    r.rssMb = peakRssMb(filterPid);
    const qs = await readQueueStats(topo);
    r.queueDropped = qs.reduce((a, x) => a + x.queueDropped, 0);
    r.userDropped = qs.reduce((a, x) => a + x.userDropped, 0);
  }
  return r;
}

function cpuSeconds(pid: number): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, in clock ticks of 1/100 s
  } catch {
    return 0;
  }
}

function peakRssMb(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

/** The pid of the process a namespace-spawned handle runs (ip netns exec execs it in place). */
function pidOf(p: { pid?: number }): number {
  return p.pid ?? 0;
}

async function withFilter<T>(topo: Topology, argv: string[], ready: RegExp, body: (pid: number) => Promise<T>): Promise<T> {
  const proc = topo.spawn('gw', argv);
  await proc.waitForLine(ready, { timeoutMs: 20000, stream: 'both' }).catch(() => undefined);
  await waitUntil(async () => (await readQueueStats(topo)).length > 0, { timeoutMs: 20000, what: 'queue bound' })
    .catch((err: Error) => {
      throw new Error(`${argv.join(' ')} did not bind the queue: ${err.message}\n${proc.tail()}`);
    });
  try {
    return await body(pidOf(proc));
  } finally {
    await proc.kill('SIGTERM', 10000);
    // The next filter binds the same queue: wait until the kernel has let go of it.
    await waitUntil(async () => (await readQueueStats(topo)).length === 0, { timeoutMs: 10000, what: 'queue unbound' });
  }
}

async function main(): Promise<void> {
  const root = repoRoot();
  execFileSync('make', ['-s', '-C', join(root, 'bench', 'c-accept')]);
  const topo = await createTopology();
  const cleanup = () => topo.destroySync();
  process.once('SIGINT', () => {
    cleanup();
    process.exit(130);
  });
  const results: Result[] = [];
  try {
    await startNginx(topo, { httpPort: 8080, httpsPort: 8443 });
    const iperfd: ChildProcess = spawn('ip', ['netns', 'exec', topo.ns.server, 'iperf3', '-s'], { stdio: 'ignore' });
    topo.onDestroy(() => { iperfd.kill(); });
    await new Promise((r) => setTimeout(r, 500));
    results.push(await measure(topo, 'no queue'));

    // Every TCP packet queued, except those flowgate sends back with NF_REPEAT and a mark (they
    // would loop); no connmark bypass, so decided flows keep coming to the filter.
    const queueAll = ['-p', 'tcp', '-m', 'mark', '--mark', '0x0/0x300', '-j', 'NFQUEUE', '--queue-num', '0', '--queue-bypass'];
    await run(topo, 'gw', ['iptables', '-I', 'FORWARD', '1', ...queueAll]);
    results.push(await withFilter(topo, [join(root, 'bench', 'c-accept', 'accept'), '0'], /^$/,
      (pid) => measure(topo, 'C loop, every packet queued', pid)));

    const cfg = join(topo.tmpDir, 'bench.yaml');
    writeFileSync(cfg, `control: ${join(topo.tmpDir, 'b.sock')}\nrules:\n  - name: b\n    action: block\n    domains: [blocked.test]\n`);
    results.push(await withFilter(topo, cliArgv('run', '--config', cfg), /bound queue/,
      (pid) => measure(topo, 'flowgate, every packet queued', pid)));
    await run(topo, 'gw', ['iptables', '-D', 'FORWARD', ...queueAll]);

    await applyRules(topo);
    results.push(await withFilter(topo, cliArgv('run', '--config', cfg), /bound queue/,
      (pid) => measure(topo, 'flowgate, default rules', pid)));
    // Two queues, one worker thread each (issue 6). The kernel balances by address pair: with the
    // one client address of this path every flow lands on the same queue, so this row shows the
    // cost of the worker pool, not a gain (see RESULTS.md).
    await run(topo, 'gw', [...cliArgv('rules', 'remove')]);
    await run(topo, 'gw', [...cliArgv('rules', 'apply', '--queues', '0:1')]);
    results.push(await withFilter(topo, cliArgv('run', '--config', cfg, '--queues', '0:1'), /bound queues/,
      (pid) => measure(topo, 'flowgate, default rules, 2 queues', pid)));
    await run(topo, 'gw', [...cliArgv('rules', 'remove')]);
    await applyRules(topo);
    const mod = join(topo.tmpDir, 'slow.mjs');
    writeFileSync(mod, 'export async function decide() { await new Promise((r) => setTimeout(r, 50)); return "allow"; }\n');
    const slow = join(topo.tmpDir, 'slow.yaml');
    writeFileSync(slow, `control: ${join(topo.tmpDir, 's.sock')}\ndecide:\n  module: ${mod}\n`);
    results.push(await withFilter(topo, cliArgv('run', '--config', slow), /bound queue/,
      (pid) => measure(topo, 'flowgate, policy answers after 50 ms', pid)));
  } finally {
    await topo.destroy();
  }
  report(results);
}

function report(results: Result[]): void {
  const base = results[0]!;
  const c = results.find((r) => r.name.startsWith('C loop'));
  const ratio = (v: number, ref: number | undefined) => (ref ? `${(v / ref).toFixed(2)}x` : '-');
  const lines = [
    '| configuration | bulk Gbit/s | vs none | vs C | HTTP conn/s | vs none | HTTPS conn/s | vs none | TTFB median ms | +ms vs none | TTFB p99 ms | filter CPU s | peak RSS MB | queue drops |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...results.map((r) => `| ${r.name} | ${r.bulkGbps.toFixed(2)} | ${ratio(r.bulkGbps, base.bulkGbps)} | ${ratio(r.bulkGbps, c?.bulkGbps)} | `
      + `${r.httpCps.toFixed(0)} | ${ratio(r.httpCps, base.httpCps)} | ${r.httpsCps.toFixed(0)} | ${ratio(r.httpsCps, base.httpsCps)} | `
      + `${r.ttfbMedianMs.toFixed(3)} | ${(r.ttfbMedianMs - base.ttfbMedianMs).toFixed(3)} | ${r.ttfbP99Ms.toFixed(3)} | `
      + `${r.cpuS?.toFixed(2) ?? '-'} | ${r.rssMb?.toFixed(0) ?? '-'} | ${r.queueDropped ?? '-'}/${r.userDropped ?? '-'} |`),
  ];
  const machine = `${os.cpus().length} cores (${os.cpus()[0]?.model ?? '?'}), ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, `
    + `kernel ${os.release()}, Node ${process.version}`;
  const text = `\n## Gateway benchmark, ${new Date().toISOString()}\n\nMachine: ${machine}. Command: \`npm run bench\` `
    + `(BENCH_SECONDS=${SECONDS}, BENCH_TTFB=${TTFB_REQUESTS}). One run; the machine is shared and noisy.\n\n${lines.join('\n')}\n`;
  process.stdout.write(text);
  const file = join(repoRoot(), 'bench', 'RESULTS.md');
  let old = '';
  try {
    old = readFileSync(file, 'utf8');
  } catch {
    old = '# Benchmark results\n\nEach section is one run of the named command on the named machine.\n';
  }
  writeFileSync(file, old + text);
}

main().catch((err: Error) => {
  process.stderr.write(`bench: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
