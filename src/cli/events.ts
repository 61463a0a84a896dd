/**
 * The event stream on stdout: one JSON object per line (CONTRACT.md "Events"), or a short human
 * line with `--log-format pretty`. Writing never blocks the packet path: events are gathered and
 * leave together (one system call, not one per decision): those of one turn of the event loop,
 * or, with a coalescing window, of up to that many milliseconds (or 256 events). They are
 * formatted when they leave, not when the engine emits them: the engine emits a decision's event
 * inside the batch, before the batch's verdicts leave, and JSON.stringify there was time those
 * verdicts waited for. When stdout is slow, events queue up to a cap and the excess is counted as
 * dropped.
 */
import type { Writable } from 'node:stream';
import type { FlowgateEvent } from '../filter/types.js';

/** Events queued while stdout is not draining before new ones are dropped. Default 10000. */
export const MAX_QUEUED_EVENTS = 10_000;

/**
 * How long `flowgate run` gathers event lines before writing them. Under connection load a write
 * per loop turn was a fifth of the daemon's busy time (bench/RESULTS.md, "What dominates"), and
 * the reader of stdout (journald) pays per write too; 10 ms is invisible to a person or a log.
 */
export const RUN_EVENT_COALESCE_MS = 10;

/** This many gathered events are written at once, whatever the window (about 80 KB of JSON). */
export const MAX_BATCH_EVENTS = 256;

/** Output format of events and logs. */
export type LogFormat = 'json' | 'pretty';

/** Writes events as lines to a stream. */
export class EventWriter {
  dropped = 0;
  written = 0;
  private queue: string[] = [];
  private blocked = false;
  private broken = false;
  /** Events gathered since the last write, formatted and written together by flush(). */
  private batch: FlowgateEvent[] = [];
  private flushScheduled = false;

  /** `coalesceMs`: 0 writes the lines of each loop turn together; more gathers for that long. */
  constructor(private readonly out: Writable, private readonly format: LogFormat = 'json',
    private readonly coalesceMs = 0) {
    out.on('drain', () => this.drain());
    out.on('error', () => {
      // stdout closed or the disk is full: keep filtering, count what could not be written.
      this.broken = true;
    });
  }

  /** Writes one event, or queues it while the stream is congested. */
  write(event: FlowgateEvent): void {
    if (this.broken) {
      this.dropped++;
      return;
    }
    if (this.blocked) {
      if (this.queue.length >= MAX_QUEUED_EVENTS) this.dropped++;
      else this.queue.push(this.line(event));
      return;
    }
    this.batch.push(event);
    if (this.batch.length >= MAX_BATCH_EVENTS) {
      this.flush();
    } else if (!this.flushScheduled) {
      this.flushScheduled = true;
      if (this.coalesceMs > 0) setTimeout(() => this.flushScheduled && this.flush(), this.coalesceMs).unref();
      else setImmediate(() => this.flushScheduled && this.flush());
    }
  }

  /** Writes the lines gathered in this turn of the event loop now (also called before exit). */
  flush(): void {
    this.flushScheduled = false;
    const events = this.batch;
    if (events.length === 0) return;
    this.batch = [];
    let text = '';
    for (const e of events) text += this.line(e);
    this.push(text, events.length);
  }

  private line(event: FlowgateEvent): string {
    return (this.format === 'json' ? JSON.stringify(event) : pretty(event)) + '\n';
  }

  /**
   * One write of `lines` events. stdout writes to a file are synchronous and throw when the disk
   * is full: those events are counted as dropped and the next ones tried again (space may come back).
   */
  private push(text: string, lines: number): void {
    try {
      if (!this.out.write(text)) this.blocked = true;
      this.written += lines;
    } catch {
      this.dropped += lines;
    }
  }

  private drain(): void {
    this.blocked = false;
    while (this.queue.length > 0 && !this.blocked && !this.broken) this.push(this.queue.shift()!, 1);
  }
}

/** One short human line for an event. */
export function pretty(e: FlowgateEvent): string {
  if (e.type === 'decision') {
    const name = e.sni ?? e.host ?? '-';
    const what = e.app === 'http' ? `${e.method ?? ''} ${name}${e.path ?? ''}` : `${e.app} ${name}`;
    return `${e.ts} ${e.verdict.toUpperCase().padEnd(5)} ${e.src}:${e.sport} -> ${e.dst}:${e.dport} ${what} ` +
      `(${e.reason}, held ${e.held_packets} pkts ${e.held_ms} ms)`;
  }
  return `${e.ts} END   ${e.src}:${e.sport} -> ${e.dst}:${e.dport} ${e.why} ` +
    `(${e.packets_out}/${e.packets_in} pkts, ${e.decisions} decisions)`;
}
