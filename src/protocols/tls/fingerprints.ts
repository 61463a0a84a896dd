/**
 * JA3 and JA4 client fingerprints of a parsed ClientHello, for rules and logs.
 * JA3: Salesforce's spec (version,ciphers,extensions,groups,point formats; GREASE removed).
 * JA4: FoxIO's JA4 for TLS over TCP (technical_details/JA4.md of FoxIO-LLC/ja4).
 */
import * as crypto from 'node:crypto';
import { Ext, isGrease, isGreaseAlpn } from './types.js';

/** The hello fields the fingerprints are computed from. */
export interface FingerprintInput {
  legacyVersion: number;
  cipherSuites: readonly number[];
  extensions: readonly number[];
  groups: readonly number[];
  ecPointFormats: readonly number[];
  signatureAlgorithms: readonly number[];
  supportedVersions: readonly number[];
  /** ALPN names as latin1 strings, or null without the extension. */
  alpn: readonly string[] | null;
}

/** A hello's three fingerprints, each computed when first read. */
export interface Fingerprints {
  ja3?: string;
  ja3Hash?: string;
  ja4?: string;
}

/** Hellos with more list entries than this (cipher suites, extensions, ...) are not remembered. */
const MAX_REMEMBERED_VALUES = 512;

/** Distinct fingerprint inputs remembered; the oldest is forgotten first. */
export const MAX_REMEMBERED_FINGERPRINTS = 1024;

const remembered = new Map<string, Fingerprints>();

/**
 * The fingerprints of every hello with the same fields as `h`: one client's connections share
 * them, and computing them (two sorts, three hashes) was a fifth of a hello's JavaScript on a
 * gateway (bench/RESULTS.md, "Fingerprints remembered"). The key holds every field they are
 * computed from, so equal keys give equal fingerprints; a hello whose lists are unusually long
 * gets an object of its own.
 */
export function fingerprintsOf(h: FingerprintInput, transport: 't' | 'q'): Fingerprints {
  const key = fingerprintKey(h, transport);
  if (key === null) return {};
  let prints = remembered.get(key);
  if (prints === undefined) {
    if (remembered.size >= MAX_REMEMBERED_FINGERPRINTS) remembered.delete(remembered.keys().next().value!);
    prints = {};
    remembered.set(key, prints);
  }
  return prints;
}

/**
 * Every fingerprint input as one string of UTF-16 code units (each value is below 0x10000),
 * each list led by its length so no two inputs share a key; null past MAX_REMEMBERED_VALUES.
 */
function fingerprintKey(h: FingerprintInput, transport: 't' | 'q'): string | null {
  const lists = [h.cipherSuites, h.extensions, h.groups, h.ecPointFormats, h.signatureAlgorithms, h.supportedVersions];
  let count = 0;
  for (const list of lists) count += list.length;
  if (h.alpn !== null) for (const name of h.alpn) count += name.length + 1;
  if (count > MAX_REMEMBERED_VALUES) return null;
  let key = transport + String.fromCharCode(h.legacyVersion);
  for (const list of lists) {
    key += String.fromCharCode(list.length) + String.fromCharCode.apply(null, list as number[]);
  }
  if (h.alpn === null) return key; // a list, even an empty one, adds its length
  key += String.fromCharCode(h.alpn.length);
  for (const name of h.alpn) key += String.fromCharCode(name.length) + name;
  return key;
}

/** The JA3 full string: decimal fields joined by '-', sections by ','; GREASE ciphers, extensions and groups removed. */
export function ja3String(h: FingerprintInput): string {
  const join = (values: readonly number[], dropGrease: boolean): string =>
    values.filter((v) => !dropGrease || !isGrease(v)).join('-');
  return [
    String(h.legacyVersion),
    join(h.cipherSuites, true),
    join(h.extensions, true),
    join(h.groups, true),
    join(h.ecPointFormats, false),
  ].join(',');
}

/** MD5 of a JA3 string, lowercase hex (the usual "JA3 hash"). */
export function ja3Hash(ja3: string): string {
  return digestHex('md5', ja3);
}

/**
 * The JA4 fingerprint (transport 't' for TCP, 'q' for a hello from QUIC). GREASE values are
 * ignored everywhere, signature algorithms and ALPN names included.
 */
export function ja4(h: FingerprintInput, transport: 't' | 'q' = 't'): string {
  const parts = ja4Parts(h, transport);
  return `${parts.a}_${hash12(parts.b)}_${hash12(parts.c)}`;
}

/** JA4_r: the JA4 fingerprint before hashing (sorted lists in hex), for debugging a mismatch. */
export function ja4Raw(h: FingerprintInput, transport: 't' | 'q' = 't'): string {
  const parts = ja4Parts(h, transport);
  return `${parts.a}_${parts.b}_${parts.c}`;
}

function ja4Parts(h: FingerprintInput, transport: 't' | 'q'): { a: string; b: string; c: string } {
  const ciphers = withoutGrease(h.cipherSuites);
  const extensions = withoutGrease(h.extensions);
  const sni = extensions.includes(Ext.serverName) ? 'd' : 'i';
  const a =
    transport + ja4Version(h) + sni + count2(ciphers.length) + count2(extensions.length) + ja4Alpn(h.alpn);
  // Four lowercase hex digits sort like the numbers they spell, so sort numerically.
  const b = hexList(ciphers.sort((x, y) => x - y));
  const named = extensions.filter((v) => v !== Ext.serverName && v !== Ext.alpn);
  const sortedExtensions = hexList(named.sort((x, y) => x - y));
  const sigs = hexList(withoutGrease(h.signatureAlgorithms));
  // "If there are no signature algorithms in the hello packet, then the string ends without an underscore."
  const c = sigs.length > 0 ? `${sortedExtensions}_${sigs}` : sortedExtensions;
  return { a, b, c };
}

function withoutGrease(values: readonly number[]): number[] {
  return values.filter((v) => !isGrease(v));
}

const JA4_VERSIONS: ReadonlyMap<number, string> = new Map([
  [0x0304, '13'],
  [0x0303, '12'],
  [0x0302, '11'],
  [0x0301, '10'],
  [0x0300, 's3'],
  [0x0002, 's2'],
  [0xfeff, 'd1'],
  [0xfefd, 'd2'],
  [0xfefc, 'd3'],
]);

/** Highest non-GREASE supported_versions entry, else legacy_version; unknown values (drafts) are "00". */
function ja4Version(h: FingerprintInput): string {
  const offered = h.supportedVersions.filter((v) => !isGrease(v));
  const version = offered.length > 0 ? Math.max(...offered) : h.legacyVersion;
  return JA4_VERSIONS.get(version) ?? '00';
}

/** First and last character of the first (non-GREASE) ALPN name; hex digits when either end is not alphanumeric. */
function ja4Alpn(alpn: readonly string[] | null): string {
  const first = alpn?.find((name) => !isGreaseAlpn(name));
  if (first === undefined || first.length === 0) return '00';
  const head = first.charCodeAt(0);
  const tail = first.charCodeAt(first.length - 1);
  if (isAlphanumeric(head) && isAlphanumeric(tail)) return first[0]! + first[first.length - 1]!;
  const hex = Buffer.from(first, 'latin1').toString('hex');
  return hex[0]! + hex[hex.length - 1]!;
}

function isAlphanumeric(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

function count2(n: number): string {
  return String(Math.min(n, 99)).padStart(2, '0');
}

const HEX_BYTES = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** Comma-separated 4-digit lowercase hex values. */
function hexList(values: readonly number[]): string {
  let out = '';
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    out += (i === 0 ? '' : ',') + HEX_BYTES[(v >> 8) & 0xff]! + HEX_BYTES[v & 0xff]!;
  }
  return out;
}

/** First 12 hex digits of SHA-256; "000000000000" for an empty list, as the spec asks. */
function hash12(text: string): string {
  if (text.length === 0) return '000000000000';
  return digestHex('sha256', text).slice(0, 12);
}

/** One-shot `crypto.hash` (Node >= 20.12), about twice as fast as `createHash` for short inputs. */
const oneShot = (crypto as { hash?: (algorithm: string, data: string, encoding: 'hex') => string }).hash;

/** Lowercase hex digest of an ASCII string (the fingerprint texts are ASCII, so UTF-8 and latin1 agree). */
function digestHex(algorithm: 'md5' | 'sha256', text: string): string {
  if (oneShot !== undefined) return oneShot(algorithm, text, 'hex');
  return crypto.createHash(algorithm).update(text, 'latin1').digest('hex');
}
