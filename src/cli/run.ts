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
import type { Config } from '../policy/config-types.js';
import { defaultConfig, loadConfig } from '../policy/config.js';
import { FlowgateError } from '../errors.js';
import { EventWriter, RUN_EVENT_COALESCE_MS, type LogFormat } from './events.js';
import { Logger } from './log.js';
import { serveControl, type ControlRequest } from './control.js';
import { describeFlows, statusReport } from './report.js';
import { sdNotify, watchdogIntervalMs } from './notify.js';
import { QueueFilter } from './filter.js';
import { serveMetrics } from './metrics.js';
import { watchLists } from '../policy/watch.js';
import { kernelWarnings } from './preflight.js';

/** What `run` is started with. */
export interface RunOptions {
  config?: string;
  queue?: number;
  logFormat?: LogFormat;
  debug?: boolean;
}

/** The parts of a running daemon the shared lifecycle drives (one queue, or a pool of workers). */
export interface Daemon {
  answer(req: ControlRequest): unknown | Promise<unknown>;
  reload(next: Config): void | Promise<void>;
  stop(): Promise<void>;
}

/** Loads the config named on the command line, or the built-in observe policy. */
export async function startupConfig(path?: string): Promise<Config> {
  return path !== undefined ? loadConfig(path) : defaultConfig();
}

/** Runs the daemon on one queue; resolves with the exit code once it has stopped. */
export async function runDaemon(opts: RunOptions): Promise<number> {
  const config = await startupConfig(opts.config);
  const format = opts.logFormat ?? config.logFormat;
  const log = new Logger(format, opts.debug);
  if (opts.queue === undefined && config.queues.last !== config.queues.first) {
    throw new FlowgateError('ERR_USAGE', 'the config names several queues: run `flowgate run --queues A:B`');
  }
  const queueNum = opts.queue ?? config.queues.first;
  const events = new EventWriter(process.stdout, format, RUN_EVENT_COALESCE_MS);
  // One queue: its handshakes come through NFLOG group N (the queue number) unless the config says
  // otherwise; `flowgate rules` logs them there (rules.ts handshakeLogRules). Workers (--queues)
  // queue their handshakes instead, since NFLOG cannot balance flows over queues.
  const filter = new QueueFilter(config, queueNum, (e) => {
    if (e.type === 'decision') events.write(e);
  }, log, '', config.handshakeLog ? queueNum : -1);
  log.info('bound queue', { queue: queueNum, config: config.file ?? '(built-in observe policy)' });
  const started = Date.now();
  return lifecycle({
    answer: (req) => req === 'status'
      ? statusReport(filter.engine, filter.queue, { queue: queueNum, started, config: config.file, events })
      : describeFlows(filter.engine),
    reload: (next) => filter.reload(next),
    stop: async () => {
      await filter.stop();
      events.flush();
    },
  }, config, opts, log);
}

/** Control socket, readiness, watchdog, SIGHUP reload and SIGTERM/SIGINT stop around a daemon. */
export async function lifecycle(daemon: Daemon, config: Config, opts: RunOptions, log: Logger): Promise<number> {
  // Kernel settings the guarantees lean on, judged at start and again on each reload (conntrack
  // may have been loaded, or a setting changed, since): a warning is given when its setting goes
  // wrong, not again at each reload while it stays so.
  let warned = new Set<string>();
  const checkKernel = () => {
    const now = kernelWarnings();
    for (const w of now) if (!warned.has(w)) log.warn(w);
    warned = new Set(now);
  };
  checkKernel();
  // `control: false` in the config (null here) turns the control socket off.
  const control = config.control === null ? undefined
    : await serveControl(config.control, (req) => daemon.answer(req)).catch((err: Error) => {
      log.warn(err.message);
      return undefined;
    });
  const metrics = config.metrics === null ? undefined
    : await serveMetrics(config.metrics.host, config.metrics.port,
      async () => (await daemon.answer('status')) as Record<string, unknown>).catch((err: Error) => {
      log.error(err.message);
      return undefined;
    });
  if (metrics !== undefined) log.info('serving metrics', { at: `${config.metrics!.host}:${config.metrics!.port}` });
  // Domain list files are watched: a change reloads the config like SIGHUP does.
  const lists = opts.config !== undefined ? watchLists(config, () => void reload()) : undefined;
  sdNotify('READY=1\nSTATUS=filtering');
  const wd = watchdogIntervalMs();
  const watchdog = wd !== undefined ? setInterval(() => sdNotify('WATCHDOG=1'), wd) : undefined;

  let reloading = false;
  const reload = async () => {
    if (reloading) return;
    checkKernel();
    if (opts.config === undefined) {
      log.info('SIGHUP: no config file to reload (built-in policy)');
      return;
    }
    reloading = true;
    sdNotify('RELOADING=1');
    try {
      const next = await loadConfig(opts.config);
      await daemon.reload(next);
      log.info('reloaded config', { config: opts.config });
    } catch (err) {
      log.error(`reload failed, keeping the previous config: ${(err as Error).message}`);
    } finally {
      reloading = false;
      sdNotify('READY=1');
    }
  };

  return new Promise<number>((resolve) => {
    let stopping = false;
    const onHup = () => void reload();
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      sdNotify('STOPPING=1');
      log.info('stopping', { signal });
      if (watchdog !== undefined) clearInterval(watchdog);
      process.off('SIGHUP', onHup);
      control?.close();
      metrics?.close();
      lists?.close();
      daemon.stop().then(() => 0, (err: Error) => {
        log.error(`stop failed: ${err.message}`);
        return 1;
      }).then((code) => process.stdout.write('', () => resolve(code)));
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', onHup);
  });
}
