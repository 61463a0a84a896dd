/**
 * Byte classes of HTTP/1.x syntax (RFC 9110 section 5.6, RFC 9112) shared by the head and body
 * parsers of the request reader.
 */

/** Line feed, carriage return, space, horizontal tab, colon. */
export const LF = 0x0a;
export const CR = 0x0d;
export const SP = 0x20;
export const HTAB = 0x09;
export const COLON = 0x3a;

/** 1 for each tchar (RFC 9110 section 5.6.2): the bytes of methods and header names. */
export const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1;
for (let b = 0x30; b <= 0x39; b++) TCHAR[b] = 1;
for (let b = 0x41; b <= 0x5a; b++) TCHAR[b] = 1;
for (let b = 0x61; b <= 0x7a; b++) TCHAR[b] = 1;

/** 1 for each byte allowed in a field value (HTAB, SP, VCHAR, obs-text; RFC 9110 section 5.5). */
export const FIELD_VCHAR = new Uint8Array(256);
FIELD_VCHAR[HTAB] = 1;
for (let b = 0x20; b <= 0x7e; b++) FIELD_VCHAR[b] = 1;
for (let b = 0x80; b <= 0xff; b++) FIELD_VCHAR[b] = 1;

/** 1 for each byte allowed inside a request-target: visible ASCII and obs-text (no CTL, SP, DEL). */
export const TARGET_CHAR = new Uint8Array(256);
for (let b = 0x21; b <= 0x7e; b++) TARGET_CHAR[b] = 1;
for (let b = 0x80; b <= 0xff; b++) TARGET_CHAR[b] = 1;

/** Hex digit values, -1 for anything else. */
export const HEX = new Int8Array(256).fill(-1);
for (let b = 0; b < 10; b++) HEX[0x30 + b] = b;
for (let b = 0; b < 6; b++) {
  HEX[0x41 + b] = 10 + b;
  HEX[0x61 + b] = 10 + b;
}

/** True for SP and HTAB (RFC 9110 OWS). */
export function isWs(b: number | undefined): boolean {
  return b === SP || b === HTAB;
}

/**
 * Checks the method at the start of a request line that starts at `lineStart`, looking at bytes
 * `from` to `end` (maybe only part of the line; `from` > `lineStart` resumes an earlier call):
 * 'bad' when a byte before the first separator is not a tchar or the line starts with
 * whitespace, 'ok' once a separator (SP, HTAB, CR) is reached, 'undecided' when the bytes ran out
 * first. Used on partial lines (early rejection of non-HTTP) and on whole ones alike, so the
 * verdict does not depend on where the stream was cut.
 */
export function checkMethod(buf: Uint8Array, lineStart: number, from: number, end: number): 'bad' | 'ok' | 'undecided' {
  for (let i = from; i < end; i++) {
    const b = buf[i]!;
    if (TCHAR[b] === 1) continue;
    if (b === CR) return 'ok';
    if (b === SP || b === HTAB) return i === lineStart ? 'bad' : 'ok';
    return 'bad';
  }
  return 'undecided';
}
