/**
 * 10,000 flows paused at once: every connection's request is held while a policy module waits
 * for a release file; flowgate's memory is read with all of them held, then the file is
 * created and every flow must be released (held back to 0, every client answered).
 *
 * Steps:
 *   1. a plain Node HTTP server (scripts/hold-server.mjs) in the server namespace, with a
 *      long listen backlog and a raised descriptor limit;
 *   2. flowgate's default rules and a daemon whose policy waits for the release file (or 90 s);
 *   3. scripts/many-flows.mjs opens the connections and sends one request on each;
 *   4. once `paused_flows` reaches the number connected: RSS, held packets and bytes, the
 *      kernel queue's waiting count;
 *   5. release; wait for every response, then for `held == 0` and `received == verdicts`.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readQueueStats, repoRoot, waitUntil, type QueueStats, type Topology } from '../../test/e2e/harness/index.js';
import { applyRules } from '../../test/e2e/flowgate.js';
import { clearRules, startFlowgateDaemon } from './filters.js';
import { memoryMb } from './procfs.js';

const PORT = 8081;

/** What the paused-flows test found. */
export interface PausedResult {
  flows: number;
  connected: number;
  connectErrors: number;
  connectMs: number;
  /** Largest `paused_flows` seen before the release. */
  paused: number;
  /** Packets held then (flowgate's count, and the kernel queue's). */
  held: number;
  kernelWaiting: number;
  heldBytes: number;
  /** flowgate's resident memory before the connections, with every flow paused, and its peak, MiB. */
  rssStartMb: number;
  rssPausedMb: number;
  peakRssMb: number;
  /** Release file created -> last response, ms. */
  releaseMs: number | null;
  responses: number;
  clientErrors: number;
  clientCodes: Record<string, number>;
  /** After the release settled. */
  heldAfter: number;
  receivedEqualsVerdicts: boolean;
  kernelWaitingAfter: number;
  queueDropped: number;
  userDropped: number;
  /** Decisions by reason, from `flowgate status`. */
  byReason: Record<string, number>;
  notes: string[];
}

const log = (s: string) => process.stderr.write(`bench: paused flows: ${s}\n`);

function policyModule(releaseFile: string): string {
  return `// Holds every decision until ${releaseFile} exists (or 90 s pass), then allows all.
import { existsSync } from 'node:fs';
const file = ${JSON.stringify(releaseFile)};
let open = false;
const waiters = [];
const release = () => {
  open = true;
  clearInterval(poll);
  for (const w of waiters.splice(0)) w();
};
const poll = setInterval(() => { if (existsSync(file)) release(); }, 20);
poll.unref();
setTimeout(release, 90000).unref();
export function decide() {
  if (open) return { verdict: 'allow', reason: 'released' };
  return new Promise((resolve) => waiters.push(() => resolve({ verdict: 'allow', reason: 'released' })));
}
`;
}

/** Runs the test with `flows` connections; bounded to about two minutes. */
export async function pausedFlows(topo: Topology, flows: number): Promise<PausedResult> {
  const notes: string[] = [];
  const node = process.execPath;
  const scripts = join(repoRoot(), 'bench', 'scripts');
  await topo.exec('server', ['sysctl', '-qw', 'net.core.somaxconn=65535', 'net.ipv4.tcp_max_syn_backlog=65535'], { check: true });
  const server = topo.spawn('server', ['sh', '-c', `ulimit -n "$(ulimit -Hn)" && exec ${node} ${join(scripts, 'hold-server.mjs')} ${PORT}`]);
  await server.waitForLine(/^ready$/, { timeoutMs: 10_000 });

  await clearRules(topo);
  await applyRules(topo);
  const releaseFile = join(topo.tmpDir, 'release');
  const mod = join(topo.tmpDir, 'hold-policy.mjs');
  writeFileSync(mod, policyModule(releaseFile));
  const fg = await startFlowgateDaemon(topo, `default: allow\ndecision_timeout_ms: 120000\ndecide:\n  module: ${mod}\n`,
    { name: 'paused' });
  const status = fg.status!;
  const rssStart = memoryMb(fg.pid)?.now ?? NaN;
  try {
    log(`opening ${flows} connections`);
    const client = topo.spawn('client', ['sh', '-c', `ulimit -n "$(ulimit -Hn)" && exec ${node} ${join(scripts, 'many-flows.mjs')} `
      + `${topo.ip4.server} ${PORT} ${flows} 256 120000 allowed.test`]);
    const connectedLine = await client.waitForLine(/"type":"connected"/, { timeoutMs: 90_000, stream: 'stdout' });
    const c = JSON.parse(connectedLine) as { connected: number; errors: number; ms: number };
    log(`${c.connected} connected (${c.errors} errors) in ${c.ms} ms; waiting for every request to be paused`);

    let paused = 0;
    let last: Record<string, unknown> = {};
    try {
      await waitUntil(async () => {
        last = await status();
        paused = Math.max(paused, Number(last.paused_flows ?? 0));
        return paused >= c.connected;
      }, { timeoutMs: 30_000, intervalMs: 250, what: 'every connection paused' });
    } catch {
      notes.push(`only ${paused} of ${c.connected} connected flows were seen paused within 30 s`);
    }
    const mem = memoryMb(fg.pid);
    const q = await readQueueStats(topo);
    log(`${paused} paused, ${String(last.held)} packets held, RSS ${mem?.now.toFixed(1)} MiB`);

    const t0 = performance.now();
    writeFileSync(releaseFile, '');
    const doneLine = await client.waitForLine(/"type":"done"/, { timeoutMs: 130_000, stream: 'stdout' });
    const done = JSON.parse(doneLine) as { responses: number; errors: number; last_ms: number | null; codes: Record<string, number> };
    const releaseMs = done.responses > 0 ? performance.now() - t0 : null;
    log(`released: ${done.responses} responses, ${done.errors} errors`);

    let after: Record<string, unknown> = {};
    await waitUntil(async () => {
      after = await status();
      return after.held === 0 && after.received === after.verdicts;
    }, { timeoutMs: 15_000, what: 'held == 0 after the release' }).catch(() => notes.push('held did not return to 0 within 15 s'));
    const qAfter: QueueStats[] = await waitUntil(async () => {
      const s = await readQueueStats(topo);
      return s.length > 0 && s.every((x) => x.waiting === 0) ? s : undefined;
    }, { timeoutMs: 5000, what: 'kernel queue empty' }).then((s) => s ?? [], () => readQueueStats(topo));
    const peak = memoryMb(fg.pid);
    return {
      flows,
      connected: c.connected,
      connectErrors: c.errors,
      connectMs: c.ms,
      paused,
      held: Number(last.held ?? 0),
      kernelWaiting: q[0]?.waiting ?? 0,
      heldBytes: Number(last.held_bytes ?? 0),
      rssStartMb: rssStart,
      rssPausedMb: mem?.now ?? NaN,
      peakRssMb: peak?.peak ?? mem?.peak ?? NaN,
      releaseMs,
      responses: done.responses,
      clientErrors: done.errors,
      clientCodes: done.codes,
      heldAfter: Number(after.held ?? NaN),
      receivedEqualsVerdicts: after.received === after.verdicts,
      kernelWaitingAfter: qAfter[0]?.waiting ?? NaN,
      queueDropped: qAfter[0]?.queueDropped ?? 0,
      userDropped: qAfter[0]?.userDropped ?? 0,
      byReason: (after.by_reason ?? {}) as Record<string, number>,
      notes,
    };
  } finally {
    writeFileSync(releaseFile, '');
    await clearRules(topo);
    await fg.stop();
    await server.kill('SIGTERM', 2000);
  }
}
