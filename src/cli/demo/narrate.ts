/**
 * How the demo talks: section headers, check marks, and one readable line per decision event.
 * Colour only on a terminal, and never with NO_COLOR set.
 */
import type { Writable } from 'node:stream';
import type { DecisionEvent } from '../../filter/types.js';

type Paint = (s: string) => string;

/** Writes the demo's narrative; `mute()` silences it (after Ctrl-C, the tour may still be unwinding). */
export class Narrator {
  readonly bold: Paint;
  readonly dim: Paint;
  readonly green: Paint;
  readonly red: Paint;
  readonly yellow: Paint;
  private muted = false;

  constructor(private readonly out: Writable & { isTTY?: boolean }, color = out.isTTY === true && !process.env.NO_COLOR) {
    // A closed stdout (`flowgate demo | head`) silences the story; the demo still cleans up.
    out.on('error', () => this.mute());
    const sgr = (on: number, off: number): Paint => (color ? (s) => `\x1b[${on}m${s}\x1b[${off}m` : (s) => s);
    this.bold = sgr(1, 22);
    this.dim = sgr(2, 22);
    this.green = sgr(32, 39);
    this.red = sgr(31, 39);
    this.yellow = sgr(33, 39);
  }

  /** One line of narrative. */
  line(text = ''): void {
    if (!this.muted) this.out.write(`${text}\n`);
  }

  /** A section header. */
  section(title: string, note?: string, force = false): void {
    const text = `\n${this.bold(title)}${note !== undefined ? this.dim(`  ${note}`) : ''}`;
    if (force) this.force(text);
    else this.line(text);
  }

  /** A check mark (passed) or a cross (failed) in front of `text`. */
  check(ok: boolean, text: string, indent = 2, force = false): void {
    const line = `${' '.repeat(indent)}${ok ? this.green('✔') : this.red('✘')} ${text}`;
    if (force) this.force(line);
    else this.line(line);
  }

  /** Silences everything written from now on, except `force()`. */
  mute(): void {
    this.muted = true;
  }

  /** Writes even when muted (the interrupt handler's own lines), unless stdout is gone. */
  force(text: string): void {
    if (this.out.writable) this.out.write(`${text}\n`);
  }

  /** One line for a decision event: verdict, what was decided, reason, held packets and time, flow. */
  decision(d: DecisionEvent, indent = 6): void {
    const verdict = d.verdict === 'allow' ? this.green('ALLOW') : this.red('BLOCK');
    const name = d.sni ?? d.host ?? '-';
    const what = d.app === 'http' ? `http ${d.method ?? '?'} ${name}${d.path ?? ''}` : `${d.app.padEnd(4)} ${name}`;
    const held = `held ${d.held_packets} pkt${d.held_packets === 1 ? '' : 's'} for ${fmtMs(d.held_ms)}`;
    this.line(`${' '.repeat(indent)}${verdict}  ${what.padEnd(26)} ${d.reason.padEnd(20)} ${held.padEnd(23)} ` +
      this.dim(`flow ${d.flow}`));
  }
}

/** Milliseconds for people: "0.3 ms", "12 ms", "503 ms". */
export function fmtMs(ms: number): string {
  return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
}
