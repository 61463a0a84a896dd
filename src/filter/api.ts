/**
 * The filter API for embedders, in the spirit of Apple's NEFilterDataProvider with its gaps
 * closed: handlers see each flow's outbound bytes and answer pass N bytes, need more, pause,
 * allow or block; a paused flow is resumed with `flow.resume(verdict)` from any asynchronous
 * context (a timer, a webhook reply, a worker thread's message), as many times as the flow needs.
 *
 * Lifecycle of one flow, as the handlers see it:
 *  1. `newFlow(flow)`: allow or block it outright, or inspect (the default);
 *  2. `data(flow, 'outbound', bytes, offset)` each time new in-order bytes arrive past what was
 *     passed; the bytes are every byte not yet passed, from stream offset `offset`;
 *  3. while paused (or while a returned Promise is pending) the flow's packets are held in the
 *     kernel queue; `decision_timeout_ms` still applies;
 *  4. `complete(flow, why)` exactly once, with the flow.
 */
import type { Flow, ResumeVerdict } from '../flow/flow.js';
import type { AnalyzerEvent, StreamAnalyzer } from '../protocols/analyzer.js';
import { Engine, type EngineInit } from './engine.js';
import type { Decision, Verdict } from './types.js';

/** What `newFlow` answers. */
export type NewFlowVerdict = 'allow' | 'block' | 'inspect';

/** What `data` answers: a final verdict, pass N more bytes, wait for more bytes, or pause until `flow.resume`. */
export type DataVerdict = 'allow' | 'block' | 'needMore' | 'pause' | { pass: number };

/** The handlers an embedder provides. Only `data` is required. */
export interface FilterHandlers {
  newFlow?(flow: Flow): NewFlowVerdict | void;
  data(flow: Flow, direction: 'outbound', bytes: Uint8Array, offset: number): DataVerdict | Promise<ResumeVerdict>;
  complete?(flow: Flow, why: string): void;
}

/** Options of {@link createFilter}: everything an engine takes but the policy and analyzer. */
export type FilterInit = Omit<EngineInit, 'decide' | 'analyzer' | 'hooks'>;

/** Builds an engine driven by handlers instead of a policy. */
export function createFilter(handlers: FilterHandlers, init: FilterInit): Engine {
  const analyzers = new WeakMap<Flow, ApiAnalyzer>();
  let onError: Verdict = 'allow';
  const engine = new Engine({
    ...init,
    decide: (_info, flow) => analyzers.get(flow)!.takeAnswer(),
    analyzer: (flow) => {
      const a = new ApiAnalyzer(flow, handlers, onError);
      analyzers.set(flow, a);
      return a;
    },
    hooks: {
      newFlow: (flow) => {
        const v = handlers.newFlow?.(flow);
        return v === 'allow' || v === 'block' ? v : undefined;
      },
      complete: (flow, why) => {
        flow.resumer = undefined;
        handlers.complete?.(flow, why);
      },
    },
  });
  onError = engine.options.onError;
  return engine;
}

const FINAL_ALLOW: Decision = { verdict: 'allow', reason: 'api', bypass: true };
const FINAL_BLOCK: Decision = { verdict: 'block', reason: 'api' };

/** Turns the embedder's answers into the engine's units; one per flow. */
class ApiAnalyzer implements StreamAnalyzer {
  private passed = 0;
  private end = 0;
  private pending: Uint8Array[] = [];
  private pendingFrom = 0;
  private state: 'idle' | 'waiting' | 'final' = 'idle';
  private answer: Decision | Promise<Decision> = FINAL_ALLOW;
  private resumed: ResumeVerdict | undefined;

  constructor(private readonly flow: Flow, private readonly handlers: FilterHandlers, private readonly onError: Verdict) {}

  frontier(): number {
    return this.state === 'final' ? Infinity : this.passed;
  }

  consumed(): number {
    return this.passed;
  }

  /** The decision for the unit just reported (called by the engine's decide). */
  takeAnswer(): Decision | Promise<Decision> {
    return this.answer;
  }

  feed(bytes: Uint8Array, offset: number): AnalyzerEvent[] {
    if (this.pending.length === 0) this.pendingFrom = offset;
    this.pending.push(Uint8Array.from(bytes)); // held until passed: must outlive the batch
    this.end = offset + bytes.length;
    return this.state === 'idle' ? this.ask() : [];
  }

  settled(): AnalyzerEvent[] {
    const v = this.resumed;
    this.resumed = undefined;
    this.flow.resumer = undefined;
    this.state = 'idle';
    if (v === undefined) {
      // Allowed by on_timeout while paused: the embedder never answered, stop inspecting.
      this.state = 'final';
      return [{ kind: 'end', start: this.passed }];
    }
    if (typeof v === 'object') {
      this.pass(v.pass);
      return this.end > this.passed ? this.ask() : [];
    }
    return []; // needMore: ask again when more bytes arrive
  }

  private pass(n: number): void {
    const to = Math.min(this.end, this.passed + Math.max(0, Math.floor(n)));
    this.passed = to;
    // Drop whole chunks that are passed; trim the first one.
    while (this.pending.length > 0 && this.pendingFrom + this.pending[0]!.length <= to) {
      this.pendingFrom += this.pending.shift()!.length;
    }
    if (this.pending.length > 0 && this.pendingFrom < to) {
      this.pending[0] = this.pending[0]!.subarray(to - this.pendingFrom);
      this.pendingFrom = to;
    }
  }

  private bytes(): Uint8Array {
    if (this.pending.length === 1) return this.pending[0]!;
    const out = new Uint8Array(this.end - this.pendingFrom);
    let o = 0;
    for (const p of this.pending) {
      out.set(p, o);
      o += p.length;
    }
    this.pending = [out];
    return out;
  }

  /** Calls `data` until it needs more bytes, pauses or decides. */
  private ask(): AnalyzerEvent[] {
    for (;;) {
      if (this.end <= this.passed) return [];
      let v: DataVerdict | Promise<ResumeVerdict>;
      try {
        v = this.handlers.data(this.flow, 'outbound', this.bytes(), this.passed);
      } catch {
        return this.final({ verdict: this.onError, reason: 'error' });
      }
      if (v === 'needMore') return [];
      if (v === 'allow') return this.final(FINAL_ALLOW);
      if (v === 'block') return this.final(FINAL_BLOCK);
      if (v === 'pause') {
        this.answer = new Promise<Decision>((resolve) => {
          this.flow.resumer = (r) => resolve(this.onResume(r));
        });
        return this.wait();
      }
      if (isPromise(v)) {
        this.answer = v.then((r) => this.onResume(r));
        return this.wait();
      }
      if (typeof v === 'object' && typeof v.pass === 'number') {
        this.pass(v.pass);
        if (v.pass <= 0) return [];
        continue;
      }
      return this.final({ verdict: this.onError, reason: 'error' });
    }
  }

  private wait(): AnalyzerEvent[] {
    this.state = 'waiting';
    return [{ kind: 'unit', start: this.passed, info: { app: 'unknown' }, opaque: false }];
  }

  private final(d: Decision): AnalyzerEvent[] {
    this.state = 'final';
    this.answer = d;
    return [{ kind: 'unit', start: this.passed, info: { app: 'unknown' }, opaque: true }];
  }

  /** Maps a resume verdict to the engine's decision; intermediate answers are not reported. */
  private onResume(r: ResumeVerdict): Decision {
    if (r === 'allow') return FINAL_ALLOW;
    if (r === 'block') return FINAL_BLOCK;
    this.resumed = r;
    return { verdict: 'allow', reason: r === 'needMore' ? 'api:need-more' : 'api:pass', quiet: true };
  }
}

function isPromise<T>(v: unknown): v is Promise<T> {
  return typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';
}
