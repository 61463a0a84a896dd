/**
 * Asynchronous decision sources, asked when no rule matched:
 *   - webhook: POST the question as JSON, answer `{"verdict":"allow"|"block","reason":"..."}`;
 *     the decision's reason is `webhook:REASON` (`webhook` when the reply gave none);
 *   - module: a JavaScript module exporting `async function decide(info)` returning the same
 *     shape; reason `module:REASON` (or `module`).
 * Any failure (unreachable, timeout, non-2xx status, bad reply, throw) gives
 * `{verdict: on_error, reason: 'error'}`. Webhook answers go through a DecisionCache (see
 * cacheKey for what makes two questions identical); module answers are not cached.
 */
import type http from 'node:http';
import type https from 'node:https';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { FlowgateError } from '../errors.js';
import { DecisionCache, type Answer } from './cache.js';
import type { DecideConfig, ModuleConfig, WebhookConfig } from './config-types.js';
import type { Decision, FlowInfo, Verdict } from './types.js';

/** Largest webhook reply read, in bytes; a longer one is a bad reply. */
export const MAX_REPLY_BYTES = 65536;

/** Longest reason kept from a reply, in characters; the rest is cut off. */
export const MAX_REASON_LENGTH = 200;

/** An asynchronous decision source. */
export interface DecisionSource {
  /** An answer: synchronous when cached, a promise that never rejects otherwise. */
  decide(info: FlowInfo): Decision | Promise<Decision>;
  /** Resolves when the source can answer (the module is imported); rejects if it never will. */
  ready(): Promise<void>;
  /** Stops: lookups in flight settle with on_error, later questions get on_error at once. */
  close(): Promise<void>;
}

/** What every source needs besides its own config. */
export interface SourceOptions {
  /** Verdict when the source fails (`on_error`). */
  onError: Verdict;
  /** Clock for the cache, in ms (tests inject one). */
  now?: () => number;
  /** Told about each failure (for logs and counters); must not throw. */
  onFailure?: (error: Error, info: FlowInfo) => void;
}

/** The fields sent to a source: the FlowInfo fields, in a fixed order, absent ones left out. */
export function questionOf(info: FlowInfo): FlowInfo {
  const { flow, src, sport, dst, dport, app, sni, alpn, ja3, ja4, ech, host, method, path, target } = info;
  return { flow, src, sport, dst, dport, app, sni, alpn, ja3, ja4, ech, host, method, path, target };
}

/**
 * What makes two questions identical for the cache: every field sent except `flow`, `sport`,
 * `src` (kept when `byClient`), and `dst` (kept only when the flow has no name).
 */
export function cacheKey(info: FlowInfo, byClient: boolean): string {
  const named = (info.sni ?? '') !== '' || (info.host ?? '') !== '';
  return JSON.stringify([
    info.app, info.sni ?? null, info.host ?? null, info.dport, info.method ?? null, info.path ?? null,
    info.target ?? null, info.alpn ?? null, info.ja3 ?? null, info.ja4 ?? null, info.ech ?? null,
    named ? null : info.dst, byClient ? info.src : null,
  ]);
}

/**
 * Validates a source's answer; null when it is not `{verdict: 'allow'|'block', reason?: string}`.
 * The reason is cut to MAX_REASON_LENGTH and control characters become spaces.
 */
export function parseAnswer(value: unknown, prefix: string): Decision | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return null;
  const { verdict, reason } = value as { verdict?: unknown; reason?: unknown };
  if (verdict !== 'allow' && verdict !== 'block') return null;
  if (reason !== undefined && reason !== null && typeof reason !== 'string') return null;
  // eslint-disable-next-line no-control-regex
  const why = (reason ?? '').slice(0, MAX_REASON_LENGTH).replace(/[\x00-\x1f\x7f]/g, ' ');
  return Object.freeze({ verdict, reason: why.length > 0 ? `${prefix}:${why}` : prefix });
}

function post(client: typeof http | typeof https, url: URL, agent: http.Agent, body: string, timeoutMs: number,
  active: Set<http.ClientRequest>): Promise<unknown> {
  return new Promise((resolvePost, rejectPost) => {
    const deadline = performance.now() + timeoutMs;
    let done = false;
    let current: http.ClientRequest | undefined;
    const timer = setTimeout(() => {
      finish(new Error(`webhook did not answer within ${timeoutMs} ms`));
      current?.destroy();
    }, timeoutMs);
    const finish = (error: Error | null, value?: unknown): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (error) rejectPost(error);
      else resolvePost(value);
    };
    const attempt = (retry: boolean): void => {
      const req = client.request(url, {
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      });
      current = req;
      active.add(req);
      req.on('close', () => active.delete(req));
      req.on('error', (err: NodeJS.ErrnoException) => {
        // A kept-alive socket the server closed just as we reused it: try once more on a new one.
        if (retry && req.reusedSocket && err.code === 'ECONNRESET' && !done && performance.now() < deadline) attempt(false);
        else finish(err);
      });
      req.on('response', (res) => {
        const status = res.statusCode ?? 0;
        if (status < 200 || status > 299) {
          res.resume();
          finish(new Error(`webhook answered HTTP ${status}`));
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_REPLY_BYTES) {
            finish(new Error(`webhook reply longer than ${MAX_REPLY_BYTES} bytes`));
            req.destroy();
          } else chunks.push(chunk);
        });
        res.on('error', (err) => finish(err));
        res.on('end', () => {
          try {
            finish(null, JSON.parse(Buffer.concat(chunks).toString('utf8')));
          } catch {
            finish(new Error('webhook reply is not JSON'));
          }
        });
      });
      req.end(body);
    };
    attempt(true);
  });
}

const requireBuiltin = createRequire(import.meta.url);

/** A webhook source (see the module comment). */
export function webhookSource(config: WebhookConfig, options: SourceOptions): DecisionSource {
  const url = new URL(config.url);
  // Loaded with the first webhook (HTTP and TLS cost about 15 ms of start-up that replay never uses).
  const client: typeof http | typeof https = requireBuiltin(url.protocol === 'https:' ? 'node:https' : 'node:http');
  const agent = new client.Agent({ keepAlive: true, maxSockets: config.maxSockets, maxFreeSockets: config.maxSockets });
  const failure: Decision = Object.freeze({ verdict: options.onError, reason: 'error' });
  const cache = new DecisionCache({
    ttlMs: config.cacheTtlS * 1000,
    errorTtlMs: config.errorCacheTtlS * 1000,
    maxEntries: config.maxCacheEntries,
    now: options.now,
    failure,
  });
  const active = new Set<http.ClientRequest>();
  let closed = false;
  const ask = async (info: FlowInfo): Promise<Answer> => {
    try {
      const reply = await post(client, url, agent, JSON.stringify(questionOf(info)), config.timeoutMs, active);
      const decision = parseAnswer(reply, 'webhook');
      if (decision === null) throw new Error('webhook reply is not {"verdict":"allow"|"block","reason":"..."}');
      return { decision, failed: false };
    } catch (err) {
      options.onFailure?.(err as Error, info);
      return { decision: failure, failed: true };
    }
  };
  return {
    decide: (info) => (closed ? failure : cache.lookup(cacheKey(info, config.cacheByClient), () => ask(info))),
    ready: () => Promise.resolve(),
    close: async () => {
      closed = true;
      for (const req of active) req.destroy(new Error('policy closed'));
      agent.destroy();
      cache.clear();
    },
  };
}

// Each load imports a fresh copy (a reload must see the edited file, and import() caches by URL).
let generation = 0;

/** A module source (see the module comment). The module is imported on first use or ready(). */
export function moduleSource(config: ModuleConfig, options: SourceOptions): DecisionSource {
  const failure: Decision = Object.freeze({ verdict: options.onError, reason: 'error' });
  let loaded: Promise<(info: FlowInfo) => unknown> | undefined;
  let closed = false;
  const load = (): Promise<(info: FlowInfo) => unknown> => {
    loaded ??= import(`${pathToFileURL(config.path).href}?generation=${++generation}`).then(
      (mod: { decide?: unknown }) => {
        if (typeof mod.decide !== 'function') throw new Error('it does not export a function "decide"');
        return mod.decide as (info: FlowInfo) => unknown;
      },
    );
    return loaded;
  };
  const decide = async (info: FlowInfo): Promise<Decision> => {
    if (closed) return failure;
    try {
      const fn = await load();
      const decision = parseAnswer(await fn(Object.freeze(questionOf(info))), 'module');
      if (decision === null) throw new Error('decide() did not return {verdict: "allow"|"block", reason?: string}');
      return decision;
    } catch (err) {
      options.onFailure?.(err instanceof Error ? err : new Error(String(err)), info);
      return failure;
    }
  };
  return {
    decide,
    ready: async () => {
      try {
        await load();
      } catch (err) {
        throw new FlowgateError('ERR_POLICY_MODULE', `cannot load policy module ${config.path}: ${(err as Error).message}`, { cause: err });
      }
    },
    close: async () => {
      closed = true;
    },
  };
}

/** The source a `decide` config describes. */
export function createSource(config: DecideConfig, options: SourceOptions): DecisionSource {
  return config.kind === 'webhook' ? webhookSource(config, options) : moduleSource(config, options);
}
