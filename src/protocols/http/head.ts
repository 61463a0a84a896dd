/**
 * Reads one HTTP/1.x request head line by line (request line, then field lines) and, at the blank
 * line, decides the host, the body framing and whether the connection turns into a tunnel.
 * Lines arrive without their line ending; the caller has already rejected bare CRs.
 */
import { normalizeAuthority, type NormalizedHost } from '../names.js';
import { COLON, FIELD_VCHAR, HTAB, SP, TARGET_CHAR, TCHAR, isWs } from './syntax.js';
import type { HttpAmbiguousReason, HttpInvalidReason, HttpRequest, TargetForm } from './types.js';

/** How the body after a head is delimited. */
export type Framing = { kind: 'none' } | { kind: 'length'; length: number } | { kind: 'chunked' };

/** A problem that makes a request ambiguous, where it was found, and whether reading must stop. */
export interface Ambiguity {
  reason: HttpAmbiguousReason;
  offset: number;
  stop: boolean;
}

/** What a complete head means for the stream. */
export interface HeadResult {
  request: HttpRequest;
  /** The most serious problem found; absent for a clean head. */
  ambiguity?: Ambiguity;
  /** Body framing; meaningless when `ambiguity.stop`. */
  framing: Framing;
  /** `connect`: bytes after the head are a tunnel; `upgrade`: bytes after the body are. */
  tunnel: 'connect' | 'upgrade' | null;
}

/** Header names whose misreading changes where a request ends or whether a tunnel starts. */
const FRAMING_NAMES = new Set(['content-length', 'transfer-encoding', 'connection', 'upgrade']);
const FRAMING_WORDS = /content-length|transfer-encoding|connection|upgrade/i;
const SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//;
const AUTHORITY_FORM = /^[^/?#]*:\d{1,5}$/;
const LENGTH = /^\d{1,15}$/;
const MAX_LENGTH = Number.MAX_SAFE_INTEGER;

/** Builds one request from its lines; `reset` before each new head. */
export class HeadBuilder {
  private method = '';
  private target = '';
  private version: '1.0' | '1.1' = '1.1';
  private form: TargetForm = 'origin';
  private path = '';
  /** The normalised host of an absolute-form or CONNECT target; null for other forms. */
  private targetHost: NormalizedHost | null = null;
  private headers: Array<[string, string]> = [];
  private lineAmbiguity: Ambiguity | null = null;
  private lineStop = false;

  /** Forgets the previous head. */
  reset(): void {
    this.headers = [];
    this.targetHost = null;
    this.lineAmbiguity = null;
    this.lineStop = false;
  }

  /** Reads the request line (bytes `s` to `e` of `buf`, no line ending); an invalid reason or null. */
  requestLine(buf: Buffer, s: number, e: number): HttpInvalidReason | null {
    let i = s;
    while (i < e && !isWs(buf[i])) i++;
    const methodEnd = i;
    while (i < e && isWs(buf[i])) i++;
    const targetStart = i;
    while (i < e && !isWs(buf[i])) i++;
    const targetEnd = i;
    while (i < e && isWs(buf[i])) i++;
    const versionStart = i;
    while (i < e && !isWs(buf[i])) i++;
    const versionEnd = i;
    while (i < e && isWs(buf[i])) i++;
    if (i < e || targetStart === targetEnd || methodEnd === s) return 'bad request line';
    if (versionStart === versionEnd) return 'http/0.9';
    this.method = cachedText(buf, s, methodEnd, false);
    this.target = buf.toString('latin1', targetStart, targetEnd);

    const major = buf[versionStart + 5]! - 0x30;
    const minor = buf[versionStart + 7]! - 0x30;
    if (
      versionEnd - versionStart !== 8 ||
      !isHttpSlash(buf, versionStart) ||
      buf[versionStart + 6] !== 0x2e ||
      !(major >= 0 && major <= 9 && minor >= 0 && minor <= 9)
    ) {
      return 'bad version';
    }
    if (major === 1 && (minor === 0 || minor === 1)) this.version = minor === 1 ? '1.1' : '1.0';
    else if (major === 2 && minor === 0 && this.method === 'PRI' && this.target === '*') return 'h2 preface';
    else return 'unsupported version';

    for (let t = targetStart; t < targetEnd; t++) if (TARGET_CHAR[buf[t]!] !== 1) return 'bad target';
    return this.classifyTarget();
  }

  private classifyTarget(): HttpInvalidReason | null {
    const target = this.target;
    if (this.method === 'CONNECT') {
      // RFC 9112 section 3.2.3: authority-form, uri-host ":" port, and only for CONNECT.
      if (!AUTHORITY_FORM.test(target)) return 'bad connect target';
      this.form = 'authority';
      this.path = '';
      this.targetHost = normalizeAuthority(target);
      return null;
    }
    if (target === '*') {
      if (this.method !== 'OPTIONS') return 'asterisk-form without OPTIONS';
      this.form = 'asterisk';
      this.path = '*';
      return null;
    }
    if (target.charCodeAt(0) === 0x2f) {
      this.form = 'origin';
      this.path = target;
      return null;
    }
    const scheme = SCHEME.exec(target);
    if (scheme === null) return 'bad target';
    this.form = 'absolute';
    const authorityStart = scheme[0].length;
    let end = authorityStart;
    while (end < target.length) {
      const c = target.charCodeAt(end);
      if (c === 0x2f || c === 0x3f || c === 0x23) break; // '/', '?', '#'
      end++;
    }
    const rest = target.slice(end);
    this.path = rest.length === 0 ? '/' : rest.charCodeAt(0) === 0x2f ? rest : '/' + rest;
    this.targetHost = normalizeAuthority(target.slice(authorityStart, end));
    return null;
  }

  /**
   * Reads one field line (bytes `s` to `e`, no line ending, starting at stream offset `offset`);
   * an invalid reason or null. Ambiguous lines are remembered for `finish`. A CR in the line
   * always makes it invalid here (the caller then reports it as a bare CR).
   */
  fieldLine(buf: Buffer, s: number, e: number, offset: number): HttpInvalidReason | null {
    const first = buf[s];
    if (first === SP || first === HTAB) return this.obsFold(buf, s, e, offset);
    let i = s;
    while (i < e && TCHAR[buf[i]!] === 1) i++;
    const nameEnd = i;
    while (i < e && isWs(buf[i])) i++;
    if (i === e || buf[i] !== COLON) {
      for (; i < e; i++) if (buf[i] === COLON) return 'bad header name';
      return 'bad header line';
    }
    if (nameEnd === s) return 'bad header name';
    let vs = i + 1;
    let ve = e;
    while (vs < ve && isWs(buf[vs])) vs++;
    while (ve > vs && isWs(buf[ve - 1])) ve--;
    for (let v = vs; v < ve; v++) if (FIELD_VCHAR[buf[v]!] !== 1) return 'bad header value';
    const name = cachedText(buf, s, nameEnd, true);
    // RFC 9112 section 5.1: whitespace before the colon MUST be rejected; some servers accept it.
    if (nameEnd !== i) this.note({ reason: 'space-before-colon', offset, stop: FRAMING_NAMES.has(name) });
    this.headers.push([name, buf.toString('latin1', vs, ve)]);
    return null;
  }

  /** RFC 9112 section 5.2: a continuation line; joined to the previous value with one SP. */
  private obsFold(buf: Buffer, s: number, e: number, offset: number): HttpInvalidReason | null {
    let vs = s;
    let ve = e;
    while (vs < ve && isWs(buf[vs])) vs++;
    while (ve > vs && isWs(buf[ve - 1])) ve--;
    for (let i = vs; i < ve; i++) if (FIELD_VCHAR[buf[i]!] !== 1) return 'bad header value';
    const text = buf.toString('latin1', vs, ve);
    let stop = FRAMING_WORDS.test(text);
    const last = this.headers[this.headers.length - 1];
    // Before any field line there is nothing to fold into: the line is consumed unread (section 2.2).
    if (last !== undefined) {
      last[1] = last[1].length === 0 ? text : text.length === 0 ? last[1] : `${last[1]} ${text}`;
      stop ||= FRAMING_NAMES.has(last[0]);
    }
    this.note({ reason: 'obs-fold', offset, stop });
    return null;
  }

  private note(a: Ambiguity): void {
    if (this.lineAmbiguity === null) this.lineAmbiguity = a;
    if (a.stop) this.lineStop = true;
  }

  /** The head ended (blank line); `headStart` is the request line's stream offset. */
  finish(headStart: number): HeadResult {
    // Only the fields that decide the host, the framing and a tunnel; the lists are made for the
    // rare heads that have those fields (most have a Host and maybe a Connection, nothing else).
    let hosts = 0;
    let host = '';
    let lengths: string[] | null = null;
    let codings: string[] | null = null;
    let tokens = 0;
    let upgrade: string | undefined;
    const headers = this.headers;
    for (let h = 0; h < headers.length; h++) {
      const name = headers[h]![0];
      const value = headers[h]![1];
      if (name === 'host') {
        if (hosts++ === 0) host = value;
      } else if (name === 'content-length') (lengths ??= []).push(value);
      else if (name === 'transfer-encoding') (codings ??= []).push(value);
      else if (name === 'connection') tokens |= connectionTokens(value);
      else if (name === 'upgrade') upgrade = upgrade === undefined ? value : `${upgrade}, ${value}`;
    }

    // Host: RFC 9112 section 3.2 says 400 for more than one Host or an invalid one.
    let hostProblem: HttpAmbiguousReason | null = null;
    let hostHeader: string | null = null;
    let headerHost: NormalizedHost | null = null;
    if (hosts > 1) hostProblem = 'duplicate-host';
    else if (hosts === 1) {
      if (host.length === 0) hostHeader = '';
      else {
        headerHost = normalizeAuthority(host);
        if (headerHost.ok) hostHeader = headerHost.name;
        else hostProblem = 'bad-host';
      }
    }
    let named: NormalizedHost | null = headerHost;
    let targetProblem: HttpAmbiguousReason | null = null;
    if (this.form === 'absolute' || this.form === 'authority') {
      named = this.targetHost;
      if (named === null || !named.ok) targetProblem = 'bad-target';
    }
    const request: HttpRequest = {
      method: this.method,
      target: this.target,
      targetForm: this.form,
      version: this.version,
      path: this.path,
      host: named !== null && named.ok ? named.name : null,
      hostHeader,
      headers: this.headers,
      chunked: false,
      connectionClose: (tokens & CLOSE) !== 0 || (this.version === '1.0' && (tokens & KEEP_ALIVE) === 0),
    };
    if (named !== null && named.ok && named.port !== undefined) request.port = named.port;
    if (upgrade !== undefined) request.upgrade = upgrade;

    const { framing, problem: framingProblem } = this.framing(lengths, codings, request);
    let tunnel: HeadResult['tunnel'] = null;
    if (this.method === 'CONNECT') tunnel = 'connect';
    else if (this.version === '1.1' && upgrade !== undefined && (tokens & UPGRADE) !== 0) tunnel = 'upgrade';

    let ambiguity: Ambiguity | undefined;
    if (framingProblem !== null) ambiguity = { reason: framingProblem, offset: headStart, stop: true };
    else if (this.lineAmbiguity !== null) ambiguity = { ...this.lineAmbiguity, stop: this.lineStop };
    else {
      const reason = targetProblem ?? hostProblem;
      if (reason !== null) ambiguity = { reason, offset: headStart, stop: false };
    }
    const result: HeadResult = { request, framing, tunnel };
    if (ambiguity !== undefined) result.ambiguity = ambiguity;
    return result;
  }

  /** RFC 9112 section 6.3: how long the body is, or why that cannot be told. */
  private framing(
    lengths: string[] | null,
    codings: string[] | null,
    request: HttpRequest,
  ): { framing: Framing; problem: HttpAmbiguousReason | null } {
    const none: Framing = { kind: 'none' };
    if (codings !== null) {
      if (lengths !== null) return { framing: none, problem: 'cl-te' };
      if (this.version === '1.0') return { framing: none, problem: 'te-in-http10' };
      if (this.method === 'CONNECT') return { framing: none, problem: 'connect-body' };
      const list = codings.join(',').split(',').map((c) => c.replace(/^[ \t]+|[ \t]+$/g, '').toLowerCase());
      const last = list.length - 1;
      for (let i = 0; i <= last; i++) {
        const c = list[i]!;
        if (c.length === 0 || !isToken(c)) return { framing: none, problem: 'bad-te' };
        if ((c === 'chunked') !== (i === last)) return { framing: none, problem: 'bad-te' };
      }
      request.chunked = true;
      return { framing: { kind: 'chunked' }, problem: null };
    }
    if (lengths !== null) {
      let length = -1;
      for (const value of lengths) {
        for (const part of value.split(',')) {
          const digits = part.replace(/^[ \t]+|[ \t]+$/g, '');
          if (!LENGTH.test(digits) || Number(digits) > MAX_LENGTH) return { framing: none, problem: 'bad-length' };
          const n = Number(digits);
          if (length >= 0 && n !== length) return { framing: none, problem: 'conflicting-length' };
          length = n;
        }
      }
      if (this.method === 'CONNECT' && length !== 0) return { framing: none, problem: 'connect-body' };
      request.contentLength = length;
      return { framing: length === 0 ? none : { kind: 'length', length }, problem: null };
    }
    return { framing: none, problem: null };
  }
}

/** Bits of `connectionTokens`: the Connection options that matter here. */
const CLOSE = 1, KEEP_ALIVE = 2, UPGRADE = 4;

/** The options among the comma-separated, trimmed, case-insensitive tokens of one Connection value. */
function connectionTokens(value: string): number {
  let bits = 0;
  for (let from = 0; ;) {
    const comma = value.indexOf(',', from);
    const token = (comma < 0 ? value.slice(from) : value.slice(from, comma)).trim().toLowerCase();
    if (token === 'close') bits |= CLOSE;
    else if (token === 'keep-alive') bits |= KEEP_ALIVE;
    else if (token === 'upgrade') bits |= UPGRADE;
    if (comma < 0) return bits;
    from = comma + 1;
  }
}

/** True when `buf` holds "HTTP/" at `at` (the caller checked the length). */
function isHttpSlash(buf: Buffer, at: number): boolean {
  return buf[at] === 0x48 && buf[at + 1] === 0x54 && buf[at + 2] === 0x54 && buf[at + 3] === 0x50 && buf[at + 4] === 0x2f;
}

/** Slots of the cache of `cachedText` (a power of two). */
const TEXT_CACHE_SLOTS = 256;
/** Recent header names (lowercased) and methods, by a hash of their bytes. */
const textCache: Array<string | undefined> = new Array<string | undefined>(TEXT_CACHE_SLOTS).fill(undefined);

/**
 * The ASCII bytes `s` to `e` of `buf` as text, lowercased when `lower` (header names), from a
 * small cache: the same few names and methods start almost every request, and a hit makes no
 * string. A hit is compared in full, so a collision only costs a miss.
 */
function cachedText(buf: Buffer, s: number, e: number, lower: boolean): string {
  let h = lower ? e - s : ~(e - s);
  for (let i = s; i < e; i++) h = (Math.imul(h, 31) + foldCase(buf[i]!, lower)) | 0;
  const slot = (h ^ (h >>> 8)) & (TEXT_CACHE_SLOTS - 1);
  const hit = textCache[slot];
  if (hit !== undefined && hit.length === e - s) {
    let i = 0;
    while (i < hit.length && hit.charCodeAt(i) === foldCase(buf[s + i]!, lower)) i++;
    if (i === hit.length) return hit;
  }
  const raw = buf.toString('latin1', s, e);
  const text = lower ? raw.toLowerCase() : raw;
  textCache[slot] = text;
  return text;
}

/** `b`, as an ASCII lowercase letter when it is an uppercase one and `lower`. */
function foldCase(b: number, lower: boolean): number {
  return lower && b >= 0x41 && b <= 0x5a ? b | 0x20 : b;
}

function isToken(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (TCHAR[text.charCodeAt(i)] !== 1) return false;
  return true;
}
