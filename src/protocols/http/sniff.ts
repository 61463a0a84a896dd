/**
 * A cheap look at the first bytes of a client stream to tell whether the HTTP/1.x reader
 * should take it.
 */
import { CR, HTAB, LF, SP, TCHAR } from './syntax.js';

/** Methods that make a stream HTTP as soon as they are followed by a space (RFC 9110, WebDAV, h2 preface). */
const KNOWN_METHODS = [
  'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH', 'PRI',
  'PROPFIND', 'PROPPATCH', 'MKCOL', 'COPY', 'MOVE', 'LOCK', 'UNLOCK', 'REPORT', 'SEARCH',
].map((m) => Buffer.from(`${m} `, 'latin1'));

/** Longest first line the sniff waits for when the method is not a known one, in bytes. */
export const SNIFF_MAX_LINE_BYTES = 4096;
/** Longest unknown method the sniff waits on before its space arrives, in bytes. */
export const SNIFF_MAX_METHOD_BYTES = 32;

const VERSION_TAIL = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+[ \t]+[^ \t]+[ \t]+HTTP\/1\.[01][ \t]*\r?$/;

/**
 * 'yes' when `firstBytes` (the start of a client stream) begin like an HTTP/1.x request: a known
 * method and a space, or a whole first line `token SP target SP HTTP/1.x`; 'maybe' when too few
 * bytes arrived to tell (empty, only leading empty lines, a prefix of a known method, or an
 * unfinished first line made of a token and a space); 'no' otherwise.
 */
export function looksLikeHttp(firstBytes: Uint8Array): 'yes' | 'no' | 'maybe' {
  let s = 0;
  while (s < firstBytes.length && (firstBytes[s] === CR || firstBytes[s] === LF)) s++;
  const rest = firstBytes.subarray(s);
  if (rest.length === 0) return 'maybe';
  let prefixOfKnown = false;
  for (const m of KNOWN_METHODS) {
    const n = Math.min(m.length, rest.length);
    let same = true;
    for (let i = 0; i < n && same; i++) same = rest[i] === m[i];
    if (!same) continue;
    if (n === m.length) return 'yes';
    prefixOfKnown = true;
  }
  if (prefixOfKnown) return 'maybe';
  // An extension method: decide on the whole first line.
  let i = 0;
  while (i < rest.length && TCHAR[rest[i]!] === 1) i++;
  if (i === 0) return 'no';
  if (i === rest.length) return i < SNIFF_MAX_METHOD_BYTES ? 'maybe' : 'no';
  if (rest[i] !== SP && rest[i] !== HTAB) return 'no';
  const lf = rest.indexOf(LF);
  if (lf < 0) return rest.length < SNIFF_MAX_LINE_BYTES ? 'maybe' : 'no';
  return VERSION_TAIL.test(Buffer.from(rest.buffer, rest.byteOffset, lf).toString('latin1')) ? 'yes' : 'no';
}
