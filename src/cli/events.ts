/**
 * The event stream on stdout: one JSON object per line (CONTRACT.md "Events"), or a short human
 * line with `--log-format pretty`. Writing never blocks the packet path: the lines of one turn
 * of the event loop leave in one write (one system call, not one per decision), and when stdout
 * is slow, events queue up to a cap and the excess is counted as dropped.
 */
import type { Writable } from 'node:stream';
import type { FlowgateEvent } from '../filter/types.js';

/** Events queued while stdout is not draining before new ones are dropped. Default 10000. */
export const MAX_QUEUED_EVENTS = 10_000;

/** Output format of events and logs. */
export type LogFormat = 'json' | 'pretty';

/** Writes events as lines to a stream. */
export class EventWriter {
  dropped = 0;
  written = 0;
  private queue: string[] = [];
  private blocked = false;
  private broken = false;
  /** Lines of this turn of the event loop, written together by flush(). */
  private batch = '';
  private batchLines = 0;
  private flushScheduled = false;

  constructor(private readonly out: Writable, private readonly format: LogFormat = 'json') {
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
    const line = this.format === 'json' ? JSON.stringify(event) + '\n' : pretty(event) + '\n';
    if (this.blocked) {
      if (this.queue.length >= MAX_QUEUED_EVENTS) this.dropped++;
      else this.queue.push(line);
      return;
    }
    this.batch += line;
    this.batchLines++;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Writes the lines gathered in this turn of the event loop now (also called before exit). */
  flush(): void {
    this.flushScheduled = false;
    if (this.batchLines === 0) return;
    const text = this.batch;
    const lines = this.batchLines;
    this.batch = '';
    this.batchLines = 0;
    this.push(text, lines);
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
