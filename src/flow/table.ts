/**
 * The flow table: live flows by direction-independent key, least recently seen first, plus
 * tombstones that remember for a short while how a removed flow was decided, so packets
 * already on their way when it was decided get the same fate.
 */
import { flowKey, srcIsLow } from './key.js';
import type { Flow } from './flow.js';
import type { TcpPacket } from '../packet/types.js';

/** How long a tombstone outlives its flow, in milliseconds. Default 10000. */
export const TOMBSTONE_MS = 10_000;
/** Tombstones kept at most; the oldest go first. Default 65536. */
export const MAX_TOMBSTONES = 65536;

/** Live flows and recently decided ones. Iteration order is least recently seen first. */
export class FlowTable {
  private readonly flows = new Map<string, Flow>();
  /**
   * Tombstones by key. One number holds both facts: when the flow was last seen (a time of 0 or
   * more), stored as is for an allow and as -1 - time for a block (an object each cost twice as much).
   */
  private readonly tombs = new Map<string, number>();
  /** The flow at the young end of `flows`: touching it again moves nothing. */
  private youngest: Flow | undefined;

  /** @param maxFlows flows kept before the least recently seen evictable one is removed. */
  constructor(private readonly maxFlows: number) {}

  /** Number of live flows. */
  get size(): number {
    return this.flows.size;
  }

  /** Number of tombstones. */
  get tombstones(): number {
    return this.tombs.size;
  }

  /** The key of the connection a packet belongs to (`low`: its source is the lower endpoint, see srcIsLow). */
  keyOf(tcp: TcpPacket, low = srcIsLow(tcp)): string {
    return flowKey(tcp, low);
  }

  /** The live flow with this key (see keyOf), if any. */
  get(key: string): Flow | undefined {
    return this.flows.get(key);
  }

  /** How a recently removed flow with this key was decided, if it was. */
  tombstone(key: string): 'allow' | 'block' | undefined {
    const t = this.tombs.get(key);
    return t === undefined ? undefined : t >= 0 ? 'allow' : 'block';
  }

  /**
   * Adds a flow. When the table is full, the least recently seen flow for which `busy` is false
   * is taken out and returned (the caller completes it); if all are busy, the oldest is.
   */
  add(flow: Flow, busy: (f: Flow) => boolean): Flow | undefined {
    let evicted: Flow | undefined;
    if (this.flows.size >= this.maxFlows) {
      let n = 0;
      for (const f of this.flows.values()) {
        if (!busy(f) || ++n > 64) {
          evicted = f;
          break;
        }
      }
      if (evicted !== undefined) this.flows.delete(evicted.key);
    }
    this.tombs.delete(flow.key);
    // (Replacing a key keeps its place in the map, so only a new key makes the flow the youngest.)
    this.youngest = this.flows.has(flow.key) ? undefined : flow;
    this.flows.set(flow.key, flow);
    return evicted;
  }

  /** Marks a flow as just seen (moves it to the young end). */
  touch(flow: Flow): void {
    // Skipping the no-op also spares the Map a deleted entry, which takes room until a rehash.
    if (flow === this.youngest) return;
    this.flows.delete(flow.key);
    this.flows.set(flow.key, flow);
    this.youngest = flow;
  }

  /** Removes a flow; with a verdict, leaves a tombstone for stragglers. */
  remove(flow: Flow, verdict?: 'allow' | 'block'): void {
    if (this.flows.get(flow.key) === flow) this.flows.delete(flow.key);
    if (this.youngest === flow) this.youngest = undefined;
    if (verdict !== undefined) {
      if (this.tombs.size >= MAX_TOMBSTONES) {
        const oldest = this.tombs.keys().next().value;
        if (oldest !== undefined) this.tombs.delete(oldest);
      }
      const at = Math.max(0, flow.lastSeen); // clocks start at 0 or later; the sign is the verdict
      this.tombs.set(flow.key, verdict === 'allow' ? at : -1 - at);
    }
  }

  /** Flows from least to most recently seen. */
  oldest(): IterableIterator<Flow> {
    return this.flows.values();
  }

  /** Every live flow (a snapshot is the caller's business). */
  all(): IterableIterator<Flow> {
    return this.flows.values();
  }

  /** Drops tombstones older than {@link TOMBSTONE_MS}. */
  expireTombstones(now: number): void {
    for (const [key, t] of this.tombs) {
      if (now - (t >= 0 ? t : -1 - t) < TOMBSTONE_MS) break;
      this.tombs.delete(key);
    }
  }
}
