/** What `flowgate status` and `flowgate flows` show, computed from a running engine. */
import type { Engine } from '../filter/engine.js';
import type { NfQueue } from '../capture/queue.js';
import type { EventWriter } from './events.js';
import { readFileSync } from 'node:fs';
import { parseQueueProcStats, QUEUE_PROC_PATH } from '../capture/procstats.js';

/** The kernel's view of one queue (/proc/net/netfilter/nfnetlink_queue); zeros when unreadable. */
function kernelQueue(queue: number): { waiting: number; queueDropped: number; userDropped: number } {
  try {
    const row = parseQueueProcStats(readFileSync(QUEUE_PROC_PATH, 'utf8')).find((r) => r.queue === queue);
    if (row !== undefined) return { waiting: row.waiting, queueDropped: row.queueDropped, userDropped: row.userDropped };
  } catch { /* not on Linux, or no permission */ }
  return { waiting: 0, queueDropped: 0, userDropped: 0 };
}

/** The daemon's counters: received must equal verdicts plus held, always. */
export function statusReport(engine: Engine, queue: NfQueue, ctx: {
  queue: number; started: number; config: string | null; events: EventWriter;
}): Record<string, unknown> {
  const s = engine.stats;
  const k = kernelQueue(ctx.queue);
  return {
    pid: process.pid,
    queue: ctx.queue,
    config: ctx.config,
    uptime_s: Math.round((Date.now() - ctx.started) / 1000),
    received: s.received,
    verdicts: s.verdicts,
    held: s.held,
    held_bytes: engine.heldBytes,
    accepted: s.accepted,
    dropped: s.dropped,
    repeated: s.repeated,
    paused_flows: s.pausedFlows,
    inspecting_flows: engine.inspectingFlows,
    flows: engine.table.size,
    decisions: s.decisions,
    by_reason: Object.fromEntries(s.byReason),
    events: Object.fromEntries(s.events),
    kernel: queue.stats(),
    kernel_waiting: k.waiting,
    kernel_queue_dropped: k.queueDropped,
    kernel_user_dropped: k.userDropped,
    latency_buckets: [...s.latency],
    latency_sum_ms: s.latencySumMs,
    events_written: ctx.events.written,
    events_dropped: ctx.events.dropped,
    memory_rss: process.memoryUsage.rss(),
  };
}

/** Live flows and what each is waiting for. */
export function describeFlows(engine: Engine): Record<string, unknown> {
  const now = performance.now();
  const flows = [];
  for (const f of engine.table.all()) {
    flows.push({
      flow: f.id, src: f.client.addr, sport: f.client.port, dst: f.server.addr, dport: f.server.port,
      phase: f.phase, tcp: f.tcp, app: f.app ?? null, midstream: f.midstream,
      held_packets: f.heldCount, held_bytes: f.heldBytes,
      waiting_for: engine.waitingFor(f),
      idle_ms: Math.round(now - f.lastSeen), decisions: f.counters.decisions,
    });
  }
  return { count: flows.length, flows };
}
