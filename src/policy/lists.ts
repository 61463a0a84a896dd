/**
 * Domain list files for the `lists` matcher. Each line is one of:
 *   - a plain entry: `ads.example` or `=exact.example` (same syntax as `domains`);
 *   - a hosts-file line: `0.0.0.0 ads.example tracker.example` (address, then names);
 *   - blank, or a comment from `#` to the end of the line.
 * Every name is an entry like in `domains` (it matches itself and the names below it). The
 * usual hosts-file boilerplate (`localhost`, `broadcasthost`, `ip6-*`, `0.0.0.0`) is skipped.
 */
import { parseIp } from './cidr.js';
import { DomainSet, parseDomainEntry } from './domains.js';

/** Most problems reported per list file; the rest are summed up in one last message. */
export const MAX_LIST_PROBLEMS = 20;

/** Most entries one list file may hold, in names (a V8 Map stops near 16.7 million). */
export const MAX_LIST_ENTRIES = 8_000_000;

/** A bad line in a list file, 1-based line and column. */
export interface ListProblem {
  line: number;
  col: number;
  message: string;
}

const HOSTS_BOILERPLATE = new Set([
  'localhost', 'localhost.localdomain', 'local', 'broadcasthost', 'ip6-localhost', 'ip6-loopback',
  'ip6-localnet', 'ip6-mcastprefix', 'ip6-allnodes', 'ip6-allrouters', 'ip6-allhosts', '0.0.0.0',
]);

// Token bounds of the current line, reused: [begin0, end0, begin1, end1, ...].
const bounds: number[] = [];

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0b || c === 0x0c;
}

/** Finds the tokens of text[start, end) up to a `#` comment; returns how many (see bounds). */
function tokenize(text: string, start: number, end: number): number {
  let n = 0;
  let i = start;
  while (i < end) {
    let c = text.charCodeAt(i);
    if (c === 0x23) break;
    if (isSpace(c)) {
      i++;
      continue;
    }
    const begin = i;
    while (i < end && !isSpace((c = text.charCodeAt(i))) && c !== 0x23) i++;
    bounds[n * 2] = begin;
    bounds[n * 2 + 1] = i;
    n++;
  }
  return n;
}

const BOILERPLATE_MAX = Math.max(...[...HOSTS_BOILERPLATE].map((n) => n.length));

function isHostsAddress(token: string): boolean {
  if (token === '0.0.0.0' || token === '127.0.0.1') return true;
  const percent = token.indexOf('%');
  return parseIp(percent < 0 ? token : token.slice(0, percent)) !== null;
}

/**
 * Reads list text into `into`, naming `source` as where its entries came from. Returns the
 * problems found (at most MAX_LIST_PROBLEMS plus one summary); good lines are added anyway.
 */
export function parseDomainList(text: string, source: string, into: DomainSet): ListProblem[] {
  const problems: ListProblem[] = [];
  let hidden = 0;
  const report = (line: number, col: number, message: string): void => {
    if (problems.length < MAX_LIST_PROBLEMS) problems.push({ line, col, message });
    else hidden++;
  };
  const sourceId = into.sourceId(source);
  const add = (token: string, line: number, col: number): boolean => {
    const entry = parseDomainEntry(token);
    if (!entry.ok) {
      report(line, col, `bad domain "${token}": ${entry.reason}`);
      return true;
    }
    if (into.size >= MAX_LIST_ENTRIES) {
      report(line, col, `more than ${MAX_LIST_ENTRIES} entries; the rest of the file is ignored`);
      return false;
    }
    into.addWithId(entry.name, entry.exact, sourceId);
    return true;
  };
  const length = text.length;
  let start = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  for (let lineNo = 1; start <= length; lineNo++) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = length;
    const lineStart = start;
    const count = tokenize(text, start, end);
    start = end + 1;
    if (count === 0) continue;
    const token = (i: number): string => text.slice(bounds[i * 2]!, bounds[i * 2 + 1]!);
    const column = (i: number): number => bounds[i * 2]! - lineStart + 1;
    if (count === 1) {
      if (!add(token(0), lineNo, column(0))) break;
      continue;
    }
    if (!isHostsAddress(token(0))) {
      report(lineNo, column(0), 'expected one domain per line, or a hosts-file line "ADDRESS NAME..."');
      continue;
    }
    let more = true;
    for (let i = 1; i < count && more; i++) {
      const name = token(i);
      if (name.length <= BOILERPLATE_MAX && HOSTS_BOILERPLATE.has(name.toLowerCase())) continue;
      more = add(name, lineNo, column(i));
    }
    if (!more) break;
  }
  if (hidden > 0) {
    const last = problems[problems.length - 1]!;
    problems.push({ line: last.line, col: last.col, message: `... and ${hidden} more problems in this file` });
  }
  return problems;
}
