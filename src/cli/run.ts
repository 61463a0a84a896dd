/**
 * `flowgate run`: binds the kernel queue and filters until SIGTERM/SIGINT.
 *
 * Lifecycle:
 *  1. load and compile the config (or the built-in observe policy);
 *  2. bind the queue, start the control socket, tell systemd we are ready;
 *  3. every batch from the queue goes through the engine; verdicts leave once per batch;
 *  4. SIGHUP reloads the config (a bad one is reported and the old one kept);
 *  5. SIGTERM/SIGINT settle every held packet with `on_shutdown`, unbind, and exit 0.
 */
import { NfQueue, M_FLAGS, M_ID, M_LEN, M_MARK, M_OFF, META_STRIDE, type PacketBatch } from '../capture/queue.js';
import { Engine } from '../filter/engine.js';
import { engineOptionsFromConfig } from '../filter/from-config.js';
import type { DecideFn } from '../filter/types.js';
import type { Config } from '../policy/config-types.js';
import { loadConfig } from '../policy/config.js';
import { builtinConfig } from '../policy/builtin.js';
import { compilePolicy, type Policy } from '../policy/policy.js';
import { FlowgateError } from '../errors.js';
import { EventWriter, type LogFormat } from './events.js';
import { Logger } from './log.js';
import { DEFAULT_CONTROL_SOCKET, serveControl } from './control.js';
import { describeFlows, statusReport } from './report.js';
import { sdNotify } from './notify.js';

/** What `run` is started with. */
export interface RunOptions {
  config?: string;
  queue?: number;
  logFormat?: LogFormat;
  debug?: boolean;
}

/** Runs the daemon; resolves with the exit code once it has stopped. */
export async function runDaemon(opts: RunOptions): Promise<number> {
  let config: Config = opts.config !== undefined ? await loadConfig(opts.config) : builtinConfig();
  const format = opts.logFormat ?? config.logFormat;
  const log = new Logger(format, opts.debug);
  const queueNum = opts.queue ?? config.queues.first;
  if (opts.queue === undefined && config.queues.last !== config.queues.first) {
    throw new FlowgateError('ERR_USAGE', 'several queues need `flowgate run --queues A:B` (one worker per queue)');
  }
  let policy: Policy = compilePolicy(config);
  const decide: DecideFn = (info) => policy.decide(info);
  const events = new EventWriter(process.stdout, format);

  let queue: NfQueue | undefined;
  const engine = new Engine({
    decide,
    sink: {
      verdict: (id, v, mark) => queue!.verdict(id, v, mark),
      sendRaw: (p) => queue!.sendRaw(p),
    },
    options: { ...engineOptionsFromConfig(config), verifyChecksums: true, strictTcp: true },
    onEvent: (e) => {
      if (e.type === 'decision') events.write(e);
    },
  });

  const onBatch = (b: PacketBatch) => {
    const meta = b.meta;
    for (let i = 0; i < b.count; i++) {
      const base = i * META_STRIDE;
      const off = meta[base + M_OFF]!;
      engine.handle({
        id: meta[base + M_ID]!,
        mark: meta[base + M_MARK]!,
        data: b.data.subarray(off, off + meta[base + M_LEN]!),
        skbInfo: meta[base + M_FLAGS]! & 0xff,
      });
    }
  };
  queue = NfQueue.open({ queue: queueNum, maxLen: config.queueMaxlen, failOpen: config.failOpen, gso: true },
    onBatch, (err) => log.error('queue error', { code: err.code, errno: err.errno, message: err.message }));
  log.info('bound queue', { queue: queueNum, config: config.file ?? '(built-in observe policy)' });

  const started = Date.now();
  const controlPath = config.control ?? DEFAULT_CONTROL_SOCKET;
  const control = await serveControl(controlPath, (req) => req === 'status'
    ? statusReport(engine, queue!, { queue: queueNum, started, config: config.file, events })
    : describeFlows(engine)).catch((err: Error) => {
    log.warn(err.message);
    return undefined;
  });
  const ticker = setInterval(() => engine.tick(), 1000);
  sdNotify('READY=1\nSTATUS=filtering');

  let reloading = false;
  const reload = async () => {
    if (reloading || opts.config === undefined) return;
    reloading = true;
    try {
      const next = await loadConfig(opts.config);
      const old = policy;
      policy = compilePolicy(next);
      config = next;
      log.info('reloaded config', { config: opts.config });
      // Decisions in flight may still use the old policy's sources: close it once they are past their deadline.
      setTimeout(() => void old.close(), config.decisionTimeoutMs + 1000).unref();
    } catch (err) {
      log.error(`reload failed, keeping the previous config: ${(err as Error).message}`);
    } finally {
      reloading = false;
    }
  };

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      sdNotify('STOPPING=1');
      engine.shutdown(config.onShutdown);
      queue!.flush();
      const s = engine.stats;
      log.info('stopping', { signal, received: s.received, verdicts: s.verdicts, held: s.held });
      queue!.close();
      clearInterval(ticker);
      control?.close();
      void policy.close();
      process.off('SIGHUP', onHup);
      process.stdout.write('', () => resolve(0));
    };
    const onHup = () => void reload();
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', onHup);
  });
}
