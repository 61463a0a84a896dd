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

/**
 * How many bytes a stream analyzer gathers while the sniff says 'maybe' before it reads the
 * stream as HTTP anyway (the request reader's limits then apply).
 */
export const SNIFF_MAX_LINE_BYTES = 4096;

// Any target and any HTTP version number: nginx reads `HTTP/1.2` or `HTTP/1.0001` as HTTP/1.1, and
// older releases take spaces and control bytes in the target, so a line ending so is read as
// HTTP (whose reader refuses what it must), never `unknown`.
const VERSION_TAIL = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+[ \t]+.*[ \t]HTTP\/[0-9]+\.[0-9]+[ \t]*$/;

/**
 * 'yes' when `firstBytes` (the start of a client stream) begin like an HTTP/1.x request: a known
 * method and a space, or a whole first line `token SP target SP HTTP/d.d`; 'maybe' when too few
 * bytes arrived to tell (empty, only leading empty lines, a prefix of a known method, or an
 * unfinished first line made of a token and maybe a space and more, up to its first CR or LF), however long: a server
 * reads an extension method or a long target split over segments as one request line, so the
 * caller bounds its wait (SNIFF_MAX_LINE_BYTES) and does not call such a stream `no`; 'no' otherwise.
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
  if (i === rest.length) return 'maybe';
  if (rest[i] !== SP && rest[i] !== HTAB) return 'no';
  // The line is judged at its first CR, not only at its LF: a server reading a request line takes
  // a CR as its end (and then wants an LF, or refuses the line), so what follows a CR changes
  // nothing, and an interactive session after an upgrade (a terminal sends CR for Enter) is not
  // held waiting for an LF that never comes.
  let end = i;
  while (end < rest.length && rest[end] !== CR && rest[end] !== LF) end++;
  // No server takes a NUL in a request line: one before its end makes the stream no request (a
  // git:// request sends one and waits for the server).
  if (end === rest.length) return rest.indexOf(0) >= 0 ? 'no' : 'maybe';
  return VERSION_TAIL.test(Buffer.from(rest.buffer, rest.byteOffset, end).toString('latin1')) ? 'yes' : 'no';
}
