/**
 * Test helpers for the ClientHello reader: fixture loading, feeding in chunks, re-framing a
 * hello into other records, and a builder for synthetic hellos.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ClientHelloReader, type TlsResult } from '../../../src/protocols/tls/clienthello.js';

/** A fixture's client-to-server bytes, one Uint8Array per TCP segment as captured. */
export function loadSegments(name: string): Uint8Array[] {
  const path = fixturePath(name);
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => new Uint8Array(Buffer.from(line, 'hex')));
}

/** A fixture's bytes as one buffer. */
export function loadStream(name: string): Uint8Array {
  return concat(loadSegments(name));
}

function fixturePath(name: string): string {
  // Tests run from test/ (tap compiling TS) or from dist/test/ (tsc output): try both layouts.
  for (const base of ['../../fixtures/tls/', '../../../../test/fixtures/tls/']) {
    const path = fileURLToPath(new URL(`${base}${name}.hex`, import.meta.url));
    if (existsSync(path)) return path;
  }
  throw new Error(`fixture ${name} not found`);
}

/** Concatenates byte arrays. */
export function concat(parts: readonly Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength))));
}

/**
 * Feeds chunks in order and collects every non-needMore result, following done with the unread
 * remainder of the chunk (lifecycle step 4). Ends with needMore when the last result was one.
 * With `stream` (the chunks' concatenation), each chunk comes with the stream so far as history,
 * as the engine's reassembler passes it, so a hello spread over chunks is read in place.
 */
export function feedAll(reader: ClientHelloReader, chunks: Iterable<Uint8Array>, stream?: Uint8Array): TlsResult[] {
  const results: TlsResult[] = [];
  let last: TlsResult = { kind: 'needMore' };
  let end = 0;
  for (let chunk of chunks) {
    if (chunk.length === 0) continue;
    end += chunk.length;
    const history = stream?.subarray(0, end);
    for (;;) {
      last = reader.feed(chunk, history);
      if (last.kind === 'needMore') break;
      results.push(last);
      if (last.kind !== 'done' || reader.unread === 0) break;
      chunk = chunk.subarray(chunk.length - reader.unread);
    }
    if (last.kind === 'invalid' || last.kind === 'notTls') break;
  }
  if (last.kind === 'needMore') results.push(last);
  return results;
}

/** The stream cut at the given offsets. */
export function* splitAt(bytes: Uint8Array, ...cuts: number[]): Generator<Uint8Array> {
  let from = 0;
  for (const cut of cuts) {
    yield bytes.subarray(from, cut);
    from = cut;
  }
  yield bytes.subarray(from);
}

/** The stream one byte at a time. */
export function* bytewise(bytes: Uint8Array): Generator<Uint8Array> {
  for (let i = 0; i < bytes.length; i++) yield bytes.subarray(i, i + 1);
}

/** A small seeded PRNG (mulberry32): deterministic test data. */
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

/** The handshake messages of a stream of well-formed records, concatenated (record headers removed). */
export function handshakeBytes(stream: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [];
  let at = 0;
  while (at + 5 <= stream.length) {
    const length = (stream[at + 3]! << 8) | stream[at + 4]!;
    if (stream[at] === 22) parts.push(stream.subarray(at + 5, at + 5 + length));
    at += 5 + length;
  }
  return concat(parts);
}

/** Wraps handshake bytes into handshake records of `size` bytes each (the last may be shorter). */
export function reframe(handshake: Uint8Array, size: number | (() => number), version: number | (() => number) = 0x0301): Uint8Array {
  const parts: Uint8Array[] = [];
  for (let at = 0; at < handshake.length; ) {
    const n = Math.min(typeof size === 'number' ? size : size(), handshake.length - at);
    const v = typeof version === 'number' ? version : version();
    parts.push(new Uint8Array([22, v >> 8, v & 0xff, n >> 8, n & 0xff]), handshake.subarray(at, at + n));
    at += n;
  }
  return concat(parts);
}

/** Big-endian u16 bytes. */
export function u16(v: number): number[] {
  return [(v >> 8) & 0xff, v & 0xff];
}

/** A u16 length prefix followed by the bytes. */
export function vec16(bytes: readonly number[]): number[] {
  return [...u16(bytes.length), ...bytes];
}

/** A u8 length prefix followed by the bytes. */
export function vec8(bytes: readonly number[]): number[] {
  return [bytes.length, ...bytes];
}

function ascii(text: string): number[] {
  return Array.from(Buffer.from(text, 'latin1'));
}

/** server_name extension data naming these host_names (type 0 unless given as [type, name]). */
export function sniData(...names: (string | [number, string])[]): number[] {
  return vec16(names.flatMap((n) => (typeof n === 'string' ? [0, ...vec16(ascii(n))] : [n[0], ...vec16(ascii(n[1]))])));
}

/** ALPN extension data. */
export function alpnData(...names: string[]): number[] {
  return vec16(names.flatMap((n) => vec8(ascii(n))));
}

/** A u16 list with a u16 length (supported_groups, signature_algorithms). */
export function u16List(values: readonly number[]): number[] {
  return vec16(values.flatMap(u16));
}

/** One extension: type and data. */
export type Extension = [type: number, data: number[]];

/** The parts of a synthetic ClientHello; all optional. */
export interface HelloSpec {
  legacyVersion?: number;
  sessionId?: number[];
  ciphers?: number[];
  compression?: number[];
  /** undefined: no extensions block at all. */
  extensions?: Extension[];
}

/** A ClientHello handshake message (header included) from its parts. */
export function helloMessage(spec: HelloSpec): Uint8Array {
  const body = [
    ...u16(spec.legacyVersion ?? 0x0303),
    ...new Array<number>(32).fill(7),
    ...vec8(spec.sessionId ?? []),
    ...u16List(spec.ciphers ?? [0x1301, 0x1302]),
    ...vec8(spec.compression ?? [0]),
  ];
  if (spec.extensions !== undefined) {
    body.push(...vec16(spec.extensions.flatMap(([type, data]) => [...u16(type), ...vec16(data)])));
  }
  return new Uint8Array([1, body.length >> 16, (body.length >> 8) & 0xff, body.length & 0xff, ...body]);
}

/** A ClientHello in one record (version 0x0301). */
export function helloRecord(spec: HelloSpec): Uint8Array {
  return reframe(helloMessage(spec), 1 << 14);
}

/** Feeds the whole input at once into a fresh reader. */
export function parseOnce(bytes: Uint8Array): TlsResult {
  return new ClientHelloReader().feed(bytes);
}
