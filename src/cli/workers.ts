/**
 * `flowgate run --queues A:B`: one worker thread per queue, each with its own kernel socket and
 * engine, so all cores filter. The kernel keeps both directions of a flow on one queue (the
 * NFQUEUE balance hash is symmetric in addresses and ports), so workers share no flow state.
 * Events come up as messages and leave through one writer; counters are summed.
 */
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import type { Config } from '../policy/config-types.js';
import { EventWriter, RUN_EVENT_COALESCE_MS, type LogFormat } from './events.js';
import { Logger } from './log.js';
import { lifecycle, startupConfig, type RunOptions } from './run.js';
import { describeFlows, statusReport } from './report.js';
import { QueueFilter } from './filter.js';
import type { ControlRequest } from './control.js';
import type { FlowgateEvent } from '../filter/types.js';

/** Options of a worker pool. */
export interface WorkersOptions {
  config?: string;
  queues: [number, number];
  logFormat?: LogFormat;
  debug?: boolean;
}

type ToWorker = { kind: 'ask'; id: number; req: ControlRequest } | { kind: 'reload' } | { kind: 'stop' };
type FromWorker = { kind: 'ready' } | { kind: 'event'; event: FlowgateEvent } | { kind: 'answer'; id: number; body: unknown }
  | { kind: 'stopped' } | { kind: 'failed'; message: string };

/** Runs one worker per queue until SIGTERM/SIGINT; resolves with the exit code. */
export async function runWorkers(o: WorkersOptions): Promise<number> {
  const config = await startupConfig(o.config);
  const format = o.logFormat ?? config.logFormat;
  const log = new Logger(format, o.debug);
  const events = new EventWriter(process.stdout, format, RUN_EVENT_COALESCE_MS);
  const file = fileURLToPath(import.meta.url);
  const workers: Worker[] = [];
  let asked = 0;
  const pending = new Map<number, { want: number; got: unknown[]; done: (v: unknown[]) => void }>();
  const stopped: Array<Promise<void>> = [];

  for (let q = o.queues[0]; q <= o.queues[1]; q++) {
    const w = new Worker(file, { workerData: { configPath: o.config, queue: q, format, debug: o.debug === true, prefix: `${q}x` } });
    workers.push(w);
    let resolveStopped!: () => void;
    stopped.push(new Promise((r) => (resolveStopped = r)));
    const ready = new Promise<void>((resolve, reject) => {
      w.on('message', (m: FromWorker) => {
        if (m.kind === 'ready') resolve();
        else if (m.kind === 'failed') reject(new Error(m.message));
        else if (m.kind === 'event') {
          if (m.event.type === 'decision') events.write(m.event);
        } else if (m.kind === 'answer') {
          const p = pending.get(m.id);
          if (p !== undefined) {
            p.got.push(m.body);
            if (p.got.length === p.want) {
              pending.delete(m.id);
              p.done(p.got);
            }
          }
        } else if (m.kind === 'stopped') resolveStopped();
      });
      w.on('error', (err) => {
        log.error(`worker for queue ${q} failed: ${err.message}`);
        reject(err);
        resolveStopped();
      });
      w.on('exit', () => resolveStopped());
    });
    try {
      await ready;
    } catch (err) {
      for (const other of workers) void other.terminate();
      throw err;
    }
  }
  log.info('bound queues', { queues: `${o.queues[0]}:${o.queues[1]}`, workers: workers.length });

  const askAll = (req: ControlRequest) => new Promise<unknown[]>((done) => {
    const id = ++asked;
    pending.set(id, { want: workers.length, got: [], done });
    for (const w of workers) w.postMessage({ kind: 'ask', id, req } satisfies ToWorker);
  });
  const opts: RunOptions = { config: o.config, logFormat: o.logFormat, debug: o.debug };
  return lifecycle({
    answer: async (req) => {
      const parts = await askAll(req);
      if (req === 'flows') {
        const flows = parts.flatMap((p) => (p as { flows: unknown[] }).flows);
        return { count: flows.length, flows };
      }
      return { ...mergeCounters(parts as Array<Record<string, unknown>>), pid: process.pid,
        queue: `${o.queues[0]}:${o.queues[1]}`, workers: parts, events_written: events.written,
        events_dropped: events.dropped, memory_rss: process.memoryUsage.rss() };
    },
    // The config holds compiled matchers that cannot cross threads: each worker loads the file itself.
    reload: () => {
      for (const w of workers) w.postMessage({ kind: 'reload' } satisfies ToWorker);
    },
    stop: async () => {
      for (const w of workers) w.postMessage({ kind: 'stop' } satisfies ToWorker);
      await Promise.all(stopped);
      events.flush();
    },
  }, config, opts, log);
}

/** Sums numbers and number maps of several status reports; other fields are left out. */
export function mergeCounters(parts: Array<Record<string, unknown>>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const p of parts) {
    for (const [k, v] of Object.entries(p)) {
      if (k === 'pid' || k === 'queue' || k === 'uptime_s' || k === 'memory_rss') continue;
      if (typeof v === 'number') out[k] = ((out[k] as number | undefined) ?? 0) + v;
      else if (Array.isArray(v) && v.every((x) => typeof x === 'number')) {
        const acc = (out[k] as number[] | undefined) ?? [];
        out[k] = v.map((x, i) => x + (acc[i] ?? 0));
      }
      else if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
        out[k] = mergeCounters([(out[k] as Record<string, unknown>) ?? {}, v as Record<string, unknown>]);
      }
    }
  }
  return out;
}

/** The worker side: one QueueFilter, driven by messages. */
async function workerMain(): Promise<void> {
  const data = workerData as { configPath?: string; queue: number; format: LogFormat; debug: boolean; prefix: string };
  const port = parentPort!;
  const log = new Logger(data.format, data.debug);
  let filter: QueueFilter;
  let config: Config;
  const started = Date.now();
  const stubWriter = new EventWriter(process.stdout, data.format);
  try {
    config = await startupConfig(data.configPath);
    filter = new QueueFilter(config, data.queue,
      (event) => port.postMessage({ kind: 'event', event } satisfies FromWorker), log, data.prefix);
  } catch (err) {
    port.postMessage({ kind: 'failed', message: (err as Error).message } satisfies FromWorker);
    return;
  }
  port.on('message', (m: ToWorker) => {
    if (m.kind === 'ask') {
      const body = m.req === 'status'
        ? statusReport(filter.engine, filter.queue, { queue: data.queue, started, config: config.file, events: stubWriter })
        : describeFlows(filter.engine);
      port.postMessage({ kind: 'answer', id: m.id, body } satisfies FromWorker);
    } else if (m.kind === 'reload') {
      startupConfig(data.configPath).then((next) => {
        config = next;
        filter.reload(next);
      }, (err: Error) => log.error(`queue ${data.queue}: reload failed: ${err.message}`));
    } else if (m.kind === 'stop') {
      void filter.stop().finally(() => {
        port.postMessage({ kind: 'stopped' } satisfies FromWorker);
        port.close();
      });
    }
  });
  port.postMessage({ kind: 'ready' } satisfies FromWorker);
}

if (!isMainThread && (workerData as { queue?: number } | null)?.queue !== undefined) void workerMain();
