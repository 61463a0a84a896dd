// Shared by the HTTP reader tests: feeding helpers, the fixtures, a seeded PRNG.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HttpRequestReader, looksLikeHttp, type HttpEvent, type HttpReaderOptions } from '../../../src/protocols/http/request.js';

/** test/fixtures/http, found from this file whether it runs from test/ or dist/test/. */
export const FIXTURE_DIR = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++, dir = dirname(dir)) {
    const candidate = join(dir, 'test', 'fixtures', 'http');
    try {
      readFileSync(join(candidate, 'README.md'));
      return candidate;
    } catch {
      // keep climbing
    }
  }
  throw new Error('test/fixtures/http not found');
})();

/** The client-to-server streams in test/fixtures/http (see its README for provenance). */
export const FIXTURES = [
  'zeek-pipelined-5-gets',
  'zeek-bro-org-keepalive',
  'suricata-post-cl-bodies',
  'zeek-docker-post-cl',
  'zeek-docker-upgrade-tcp',
  'gopacket-chrome23-keepalive',
  'curl-get',
  'curl-post-then-get',
  'curl-chunked-then-other-host',
  'curl-proxy-absolute-form',
  'curl-connect-then-clienthello',
  'chromium-page-keepalive',
  'chromium-post-keepalive',
  'chromium-proxy-absolute-form',
  'chromium-connect-then-clienthello',
] as const;

/** Reads one fixture stream. */
export function fixture(name: string): Buffer {
  return readFileSync(join(FIXTURE_DIR, `${name}.bin`));
}

/** Text to bytes, one byte per character. */
export function bytes(text: string): Buffer {
  return Buffer.from(text, 'latin1');
}

/** Feeds `data` cut at the given offsets (ascending) into a new reader; all events in order. */
export function feedCuts(data: Uint8Array, cuts: number[], options?: HttpReaderOptions): HttpEvent[] {
  const reader = new HttpRequestReader(options);
  const events: HttpEvent[] = [];
  let from = 0;
  for (const cut of [...cuts, data.length]) {
    events.push(...reader.feed(data.subarray(from, cut)));
    from = cut;
  }
  return events;
}

/** Feeds `data` whole into a new reader. */
export function feedWhole(data: Uint8Array, options?: HttpReaderOptions): HttpEvent[] {
  return [...new HttpRequestReader(options).feed(data)];
}

/** Feeds `data` one byte at a time. */
export function feedBytewise(data: Uint8Array, options?: HttpReaderOptions): HttpEvent[] {
  const reader = new HttpRequestReader(options);
  const events: HttpEvent[] = [];
  for (let i = 0; i < data.length; i++) events.push(...reader.feed(data.subarray(i, i + 1)));
  return events;
}

/** Feeds several segments (strings or bytes) in order into one reader. */
export function feedSegments(segments: Array<string | Uint8Array>, options?: HttpReaderOptions): HttpEvent[] {
  const reader = new HttpRequestReader(options);
  const events: HttpEvent[] = [];
  for (const s of segments) events.push(...reader.feed(typeof s === 'string' ? bytes(s) : s));
  return events;
}

/** Mulberry32: a small seeded PRNG returning floats in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Pieces of HTTP syntax that mutations splice in: they reach deeper states than random bytes. */
const TOKENS = [
  '\r\n', '\n', '\r', ' ', '\t', ':', ',', ';', '0\r\n\r\n', 'Host: a.test\r\n', 'Host:',
  'Content-Length: 5\r\n', 'Content-Length: 0\r\n', 'Transfer-Encoding: chunked\r\n',
  'Transfer-Encoding: xchunked\r\n', 'Connection: upgrade\r\nUpgrade: h2c\r\n', '\r\n\r\n',
  'GET / HTTP/1.1\r\n', 'CONNECT a.test:443 HTTP/1.1\r\n', 'HTTP/1.0', 'HTTP/2.0', '5\r\nabcde\r\n',
  'ffffffffffffffffff\r\n', ' \r\n', 'http://b.test/', '[::1]', '*',
].map((t) => bytes(t));

/** One random mutation of `data`: flip, insert, delete, duplicate, splice a token, truncate. */
export function mutate(data: Uint8Array, rand: () => number): Uint8Array {
  const n = data.length;
  const at = Math.floor(rand() * (n + 1));
  const pick = Math.floor(rand() * 7);
  switch (pick) {
    case 0: {
      const out = Uint8Array.from(data);
      if (n > 0) out[Math.min(at, n - 1)] = Math.floor(rand() * 256);
      return out;
    }
    case 1: {
      const len = 1 + Math.floor(rand() * 8);
      return concat(data.subarray(0, at), randomBytes(len, rand), data.subarray(at));
    }
    case 2: {
      const len = 1 + Math.floor(rand() * 16);
      return concat(data.subarray(0, at), data.subarray(Math.min(n, at + len)));
    }
    case 3: {
      const len = 1 + Math.floor(rand() * 64);
      return concat(data.subarray(0, at), data.subarray(at, Math.min(n, at + len)), data.subarray(at));
    }
    case 4:
    case 5: {
      const token = TOKENS[Math.floor(rand() * TOKENS.length)]!;
      const drop = pick === 5 ? Math.floor(rand() * 4) : 0;
      return concat(data.subarray(0, at), token, data.subarray(Math.min(n, at + drop)));
    }
    default:
      return data.subarray(0, at);
  }
}

function randomBytes(len: number, rand: () => number): Uint8Array {
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) out[i] = Math.floor(rand() * 256);
  return out;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  let len = 0;
  for (const p of parts) len += p.length;
  const out = new Uint8Array(len);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Seeds for mutation: the start of every fixture plus hand-made heads reaching every state. */
export function fuzzSeeds(): Uint8Array[] {
  const seeds: Uint8Array[] = FIXTURES.map((name) => fixture(name).subarray(0, 900));
  for (const text of [
    'POST /u HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nWiki\r\n0\r\nT: 1\r\n\r\nGET / HTTP/1.1\r\nHost: b.test\r\n\r\n',
    'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET http://b.test:81/x HTTP/1.1\r\nHost: c\r\n\r\n',
    'CONNECT blocked.test:443 HTTP/1.1\r\nHost: allowed.test\r\n\r\n\x16\x03\x01\x00\x05hello',
    '\r\n\nGET / HTTP/1.0\nHost:x\n X-Fold: y\nHost : z\n\n',
    'GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05hello',
    'OPTIONS * HTTP/1.1\r\nHost: [::1]:8080\r\nContent-Length: 1, 1\r\n\r\nx',
    'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n',
  ]) {
    seeds.push(bytes(text));
  }
  return seeds;
}

/**
 * Feeds one input (and sniffs it) and checks what must hold for any input: no exception, offsets inside the
 * stream and in order, nothing after a final event, and (when `cut` is given) the same events
 * when the input is fed in two pieces. Returns a description of the first violation, or null.
 */
export function checkInput(input: Uint8Array, cut?: number): { error: string | null; events: HttpEvent[] } {
  let events: HttpEvent[];
  try {
    if (!['yes', 'no', 'maybe'].includes(looksLikeHttp(input))) return { error: 'looksLikeHttp answer', events: [] };
    events = feedWhole(input);
  } catch (err) {
    return { error: `exception: ${(err as Error).stack ?? String(err)}`, events: [] };
  }
  let at = 0;
  let finalSeen = false;
  for (const e of events) {
    if (finalSeen) return { error: 'event after a final event', events };
    const offsets =
      e.kind === 'request' ? [e.headStart, e.headEnd] : e.kind === 'bodyEnd' ? [e.end] : e.kind === 'tunnel' ? [e.offset] : [];
    for (const o of offsets) {
      if (!(o >= at && o <= input.length)) return { error: `offset ${o} out of order (after ${at}, length ${input.length})`, events };
      at = o;
    }
    if ('offset' in e && !(e.offset >= 0 && e.offset <= input.length)) return { error: `offset ${e.offset} outside the input`, events };
    finalSeen = e.kind === 'invalid' || e.kind === 'tunnel' || (e.kind === 'ambiguous' && e.stop);
  }
  if (cut !== undefined) {
    let split: HttpEvent[];
    try {
      split = feedCuts(input, [cut]);
    } catch (err) {
      return { error: `exception when split: ${(err as Error).stack ?? String(err)}`, events };
    }
    if (JSON.stringify(split) !== JSON.stringify(events)) return { error: `split at ${cut} differs`, events };
  }
  return { error: null, events };
}
