/**
 * `flowgate replay`: the same engine as `run`, fed from capture files instead of the kernel
 * queue, on capture time. Prints the decisions it would have made; needs no root.
 */
import { readCaptureFrames, CaptureError } from '../capture/pcapfile.js';
import type { FrameBatch } from '../capture/frames.js';
import { ipOffset } from '../capture/linktype.js';
import { Engine, type RawPacket } from '../filter/engine.js';
import { engineOptionsFromConfig } from '../filter/from-config.js';
import type { DecideFn, DecisionEvent, Scheduler } from '../filter/types.js';
import { defaultConfig } from '../policy/config-types.js';
import { compilePolicy } from '../policy/policy.js';
import type { VerdictValue } from '../verdict/sink.js';
import { NF_ACCEPT, NF_DROP } from '../verdict/sink.js';

/** Options of `replay`. */
export interface ReplayOptions {
  config?: string;
  format?: 'json' | 'table';
  /** Simulated policy latency, in capture-time milliseconds. */
  policyLatency?: number;
}

/** A decision as replay reports it: the live event plus the frame that was being read. */
export interface ReplayDecision extends DecisionEvent {
  file: string;
  frame: number;
}

/** Timers on capture time: they fire when the capture clock passes them. */
export class VirtualScheduler implements Scheduler {
  now = 0;
  private timers: Array<{ at: number; fn: () => void; live: boolean }> = [];

  setTimeout(fn: () => void, ms: number): unknown {
    const t = { at: this.now + ms, fn, live: true };
    this.timers.push(t);
    return t;
  }

  clearTimeout(handle: unknown): void {
    (handle as { live: boolean }).live = false;
  }

  /** Moves the clock to `now` and runs what is due; returns how many timers ran. */
  advance(now: number): number {
    if (now > this.now) this.now = now;
    if (this.timers.length === 0) return 0;
    let ran = 0;
    const due = this.timers.filter((t) => t.live && t.at <= this.now).sort((a, b) => a.at - b.at);
    this.timers = this.timers.filter((t) => t.live && t.at > this.now);
    for (const t of due) {
      t.live = false;
      ran++;
      t.fn();
    }
    return ran;
  }

  /** Capture time of the earliest pending timer; Infinity when there is none. */
  nextAt(): number {
    let at = Infinity;
    for (const t of this.timers) if (t.live && t.at < at) at = t.at;
    return at;
  }
}

/**
 * Runs the timers due up to `until` (all of them for Infinity), earliest first, and lets the
 * promise callbacks each one starts settle before the next: a policy answer due before a
 * decision timeout wins over it, as it would in real time.
 */
async function runTimers(sched: VirtualScheduler, until: number): Promise<void> {
  for (let at = sched.nextAt(); at !== Infinity && at <= until; at = sched.nextAt()) {
    sched.advance(at);
    await settleMicrotasks();
  }
  if (until !== Infinity) sched.advance(until);
}

/** Counts verdicts like a kernel would see them. */
class CountingSink {
  accepted = 0;
  dropped = 0;
  repeated = 0;
  verdict(_id: number, v: VerdictValue): void {
    if (v === NF_ACCEPT) this.accepted++;
    else if (v === NF_DROP) this.dropped++;
    else this.repeated++;
  }
}

/** Replays one file through a fresh engine; calls `onDecision` for each decision. */
export async function replayFile(file: string, decide: DecideFn, options: ReturnType<typeof engineOptionsFromConfig>,
  onDecision: (d: ReplayDecision) => void,
  opts: { policyLatency?: number; onProgress?: (read: number, total: number) => void; onBatch?: () => void } = {},
): Promise<{ frames: number; packets: number; skipped: number; stats: Engine['stats'] }> {
  const sched = new VirtualScheduler();
  let frame = 0;
  const latency = opts.policyLatency ?? 0;
  const slowDecide: DecideFn = latency > 0
    ? (info, flow) => new Promise((resolve, reject) => {
      sched.setTimeout(() => {
        try {
          Promise.resolve(decide(info, flow)).then(resolve, reject);
        } catch (err) {
          reject(err);
        }
      }, latency);
    })
    : decide;
  const engine = new Engine({
    decide: slowDecide,
    sink: new CountingSink(),
    scheduler: sched,
    now: () => sched.now,
    wallClock: () => isoTime(sched.now),
    options: { ...options, verifyChecksums: false, idPrefix: '' },
    events: 'decisions', // replay reports decisions only: flow_end events are not even built
    onEvent: (e) => {
      // The event is fresh and only ours: extend it rather than copy it (same key order).
      if (e.type !== 'decision') return;
      const d = e as ReplayDecision;
      d.file = file;
      d.frame = frame;
      onDecision(d);
    },
  });
  let packets = 0;
  let skipped = 0;
  let lastTick = 0;
  let sinceTurn = 0;
  // One packet object for the whole file: the engine reads it during `handle` and keeps only
  // copies of its fields.
  const pkt: RawPacket = { id: 0, mark: 0, data: new Uint8Array(0), skbInfo: 0 };
  /**
   * Replays `batch` from index `from`; returns the index of a frame before which timers are
   * due (the caller runs them and resumes there), or the batch length. Synchronous, so the
   * per-frame loop is a small function of its own rather than part of this async one.
   */
  const replayBatch = (batch: FrameBatch, from: number): number => {
    const bytes = batch.bytes;
    // The IP packet's view is made from the chunk's buffer: `subarray` costs half as much again.
    const buffer = bytes.buffer;
    const base = bytes.byteOffset;
    for (let i = from; i < batch.length; i++) {
      const wall = batch.tsMicros[i]! / 1000;
      const end = batch.start[i]! + batch.caplen[i]!;
      const ip = ipOffset(batch.linktype[i]!, bytes, batch.start[i]!, end);
      if (ip < 0) {
        frame = batch.first + i;
        skipped++;
        continue;
      }
      // Decisions due before this frame settle first (reported with the frame before it).
      if (sched.nextAt() <= wall) return i;
      sched.advance(wall);
      frame = batch.first + i;
      if (wall - lastTick >= 1000) {
        engine.tick(wall);
        lastTick = wall;
      }
      packets++;
      pkt.id = frame;
      pkt.data = new Uint8Array(buffer, base + ip, end - ip);
      engine.handle(pkt);
    }
    return batch.length;
  };
  // The engine copies what it keeps of a packet, so the read buffers can be reused.
  const reading = { onProgress: opts.onProgress, reuseChunks: true, chunkBytes: REPLAY_CHUNK_BYTES };
  for await (const batch of readCaptureFrames(file, reading)) {
    for (let i = replayBatch(batch, 0); i < batch.length; i = replayBatch(batch, i)) {
      await runTimers(sched, batch.tsMicros[i]! / 1000);
    }
    // Let other work (policy answers, I/O) in every few thousand frames.
    sinceTurn += batch.length;
    if (sinceTurn < TURN_FRAMES) continue;
    sinceTurn = 0;
    opts.onBatch?.();
    await settleMicrotasks();
  }
  // The capture ended: let pending decisions finish (or time out), then settle what is left.
  await runTimers(sched, Infinity);
  engine.shutdown('allow');
  return { frames: frame, packets, skipped, stats: engine.stats };
}

let isoDay = NaN;
let isoDate = '';

/** "00".."59": two-digit fields of a time of day. */
const TWO = Array.from({ length: 60 }, (_, i) => (i < 10 ? '0' : '') + i);

/**
 * `new Date(ms).toISOString()`, with the date formatted once per day of capture time and the
 * time of day by arithmetic: every event carries one.
 */
function isoTime(ms: number): string {
  const whole = Math.floor(ms);
  // Only years 0000-9999 have the fixed-width form.
  if (!(whole >= 0 && whole < 253402300800000)) return new Date(ms).toISOString();
  const day = Math.floor(whole / 86400000);
  if (day !== isoDay) {
    isoDay = day;
    isoDate = new Date(day * 86400000).toISOString().slice(0, 11);
  }
  let rest = whole - day * 86400000;
  const milli = rest % 1000;
  rest = (rest - milli) / 1000;
  const sec = rest % 60;
  rest = (rest - sec) / 60;
  const min = rest % 60;
  const hour = (rest - min) / 60;
  return isoDate + (hour < 10 ? '0' : '') + hour + ':' + TWO[min] + ':' + TWO[sec] + '.' +
    (milli < 10 ? '00' : milli < 100 ? '0' : '') + milli + 'Z';
}

/**
 * Bytes read from a capture per read call (bytes). Larger than the reader's default: each read
 * is a promise and a thread-pool wake-up, and with reused buffers the size costs no more memory
 * than two of them.
 */
const REPLAY_CHUNK_BYTES = 4 << 20;

/** Frames replayed between two turns of the event loop (frames). */
const TURN_FRAMES = 2048;

async function settleMicrotasks(): Promise<void> {
  await new Promise<void>((r) => setImmediate(r));
}

/** The `replay` command: prints decisions; returns the exit code. */
export async function replayFiles(files: string[], o: ReplayOptions): Promise<number> {
  // The YAML reader (a tenth of a second to load) only when there is a file to read.
  const config = o.config !== undefined ? await (await import('../policy/config.js')).loadConfig(o.config) : defaultConfig();
  const policy = compilePolicy(config);
  const decide: DecideFn = (info) => policy.decide(info);
  const table = o.format === 'table';
  if (table) process.stdout.write(`${'FRAME'.padStart(7)}  ${'VERDICT'.padEnd(7)} ${'APP'.padEnd(7)} ${'CLIENT'.padEnd(22)} ` +
    `${'SERVER'.padEnd(22)} NAME / REQUEST  (REASON)\n`);
  const progress = process.stderr.isTTY ? progressBar() : undefined;
  // Decisions are written a capture chunk at a time (or every 64 KiB), not one write per line.
  let out = '';
  const flush = (): void => {
    if (out === '') return;
    process.stdout.write(out);
    out = '';
  };
  const print = (d: ReplayDecision): void => {
    out += table ? tableLine(d) : JSON.stringify(d) + '\n';
    if (out.length >= 65536) flush();
  };
  let code = 0;
  // A reader that went away (`| head`) ends the replay quietly, as it does for other tools.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') process.stderr.write(`flowgate: cannot write the output: ${err.message}\n`);
    process.exit(err.code === 'EPIPE' ? code : 1);
  });
  try {
    for (const file of files) {
      try {
        const res = await replayFile(file, decide, engineOptionsFromConfig(config), print,
          { policyLatency: o.policyLatency, onProgress: progress && ((r, t) => progress(file, r, t)), onBatch: flush });
        flush();
        progress?.(file, 1, 1, true);
        if (res.stats.events.get('internal_error')) {
          process.stderr.write(`flowgate: ${file}: ${res.stats.events.get('internal_error')} internal errors\n`);
        }
      } catch (err) {
        flush();
        progress?.(file, 1, 1, true);
        if (err instanceof CaptureError) {
          // The message names the file already.
          process.stderr.write(`flowgate: ${err.message}\n`);
          code = 1;
          continue;
        }
        const sys = err as NodeJS.ErrnoException;
        if (typeof sys.code === 'string' && typeof sys.syscall === 'string') {
          // The file cannot be read (missing, a folder, no permission): say so and go on with the next.
          const why = sys.code === 'ENOENT' ? 'no such file' : sys.code === 'EISDIR' ? 'is a directory'
            : sys.code === 'EACCES' ? 'permission denied' : sys.message;
          process.stderr.write(`flowgate: ${file}: ${why}\n`);
          code = 1;
          continue;
        }
        throw err;
      }
    }
  } finally {
    await policy.close();
  }
  return code;
}

function tableLine(d: ReplayDecision): string {
  const name = d.app === 'http' ? `${d.method ?? ''} ${d.host ?? '-'}${d.path ?? ''}` : (d.sni ?? '-');
  return `${String(d.frame).padStart(7)}  ${d.verdict.padEnd(7)} ${d.app.padEnd(7)} ${`${d.src}:${d.sport}`.padEnd(22)} ` +
    `${`${d.dst}:${d.dport}`.padEnd(22)} ${name}  (${d.reason})\n`;
}

/** A one-line progress bar on stderr for long files. */
function progressBar(): (file: string, read: number, total: number, done?: boolean) => void {
  let last = 0;
  return (file, read, total, done) => {
    const now = Date.now();
    if (!done && now - last < 100) return;
    last = now;
    const pct = total > 0 ? Math.min(100, Math.floor((read / total) * 100)) : 100;
    const bar = '#'.repeat(Math.floor(pct / 5)).padEnd(20, '.');
    process.stderr.write(`\r${file.slice(-40)} [${bar}] ${pct}%${done ? '\n' : ''}`);
  };
}
