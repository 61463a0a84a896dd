/**
 * Answers of a decision source, shared and remembered: concurrent identical questions (same
 * key) wait on one lookup ("single flight"), and answers are kept for a time (failures for a
 * shorter one) in a bounded least-recently-used map. A cached answer comes back synchronously.
 */
import type { Decision } from './types.js';

/** Default bound on cached answers (`max_cache_entries`), in entries. */
export const DEFAULT_MAX_CACHE_ENTRIES = 100_000;

/** What a lookup produced: the decision, and whether it stands for a failure. */
export interface Answer {
  decision: Decision;
  failed: boolean;
}

/** Options of a DecisionCache. */
export interface DecisionCacheOptions {
  /** How long an answer is reused, in ms; 0 = never cached (still single flight). */
  ttlMs: number;
  /** How long a failure is reused, in ms; 0 = never cached. */
  errorTtlMs: number;
  /** Most answers kept, in entries; the least recently used go first. Default 100000. */
  maxEntries?: number;
  /** Clock in ms (tests inject one); default performance.now, which wall-clock jumps do not move. */
  now?: () => number;
  /** The answer when a lookup rejects (lookups should not, but a cache must not hang on one). */
  failure: Decision;
}

interface Entry {
  decision: Decision;
  expires: number;
}

/** See the module comment. Keys are built by the caller (sources.ts cacheKey). */
export class DecisionCache {
  readonly #answers = new Map<string, Entry>();
  readonly #pending = new Map<string, Promise<Decision>>();
  readonly #ttlMs: number;
  readonly #errorTtlMs: number;
  readonly #maxEntries: number;
  readonly #now: () => number;
  readonly #failure: Decision;

  constructor(options: DecisionCacheOptions) {
    this.#ttlMs = options.ttlMs;
    this.#errorTtlMs = options.errorTtlMs;
    this.#maxEntries = options.maxEntries ?? DEFAULT_MAX_CACHE_ENTRIES;
    this.#now = options.now ?? (() => performance.now());
    this.#failure = options.failure;
  }

  /** Number of cached answers (expired ones included until they are looked at or pushed out). */
  get size(): number {
    return this.#answers.size;
  }

  /** Number of lookups in flight. */
  get pending(): number {
    return this.#pending.size;
  }

  /** A live cached answer for the key, refreshed as most recently used. */
  get(key: string): Decision | undefined {
    const entry = this.#answers.get(key);
    if (entry === undefined) return undefined;
    this.#answers.delete(key);
    if (entry.expires <= this.#now()) return undefined;
    this.#answers.set(key, entry);
    return entry.decision;
  }

  /**
   * The cached answer (synchronously), else the lookup already in flight for the key, else a
   * new lookup started with `fetch`.
   */
  lookup(key: string, fetch: () => Promise<Answer>): Decision | Promise<Decision> {
    const cached = this.get(key);
    if (cached !== undefined) return cached;
    const inFlight = this.#pending.get(key);
    if (inFlight !== undefined) return inFlight;
    const started = fetch()
      .catch((): Answer => ({ decision: this.#failure, failed: true }))
      .then((answer) => {
        this.#pending.delete(key);
        this.#store(key, answer);
        return answer.decision;
      });
    this.#pending.set(key, started);
    return started;
  }

  /** Forgets every answer (lookups in flight still settle, and are then cached). */
  clear(): void {
    this.#answers.clear();
  }

  #store(key: string, answer: Answer): void {
    const ttl = answer.failed ? this.#errorTtlMs : this.#ttlMs;
    if (ttl <= 0) return;
    this.#answers.delete(key);
    this.#answers.set(key, { decision: answer.decision, expires: this.#now() + ttl });
    while (this.#answers.size > this.#maxEntries) {
      this.#answers.delete(this.#answers.keys().next().value!);
    }
  }
}
