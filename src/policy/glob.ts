/**
 * Path globs for the `paths` matcher. `*` matches within one path segment, `?` one character
 * other than `/`, `**` any number of whole segments (a `/**` at the end also matches the
 * folder itself: `/admin/**` matches `/admin`). Matching is case-sensitive and runs on the
 * request path as the server will see it (see normalizePath).
 */

/** A compiled glob. */
export interface PathGlob {
  /** The glob as written. */
  pattern: string;
  /** Whether a normalised path (see normalizePath) matches. */
  test(path: string): boolean;
}

/** Result of compiling a glob. */
export type GlobParse = { ok: true; glob: PathGlob } | { ok: false; reason: string };

const SPECIAL = /[\\^$.|+(){}[\]]/g;

function segmentSource(segment: string): string | null {
  let out = '';
  for (let i = 0; i < segment.length; i++) {
    const c = segment[i]!;
    if (c === '*') {
      if (segment[i + 1] === '*') return null;
      out += '[^/]*';
    } else if (c === '?') {
      out += '[^/]';
    } else {
      out += c.replace(SPECIAL, '\\$&');
    }
  }
  return out;
}

/** Compiles a path glob; refuses empty globs, spaces and `**` that is not a whole segment. */
export function compileGlob(pattern: string): GlobParse {
  if (pattern.length === 0) return { ok: false, reason: 'empty glob' };
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x20\x7f]/.test(pattern)) return { ok: false, reason: 'spaces and control characters never occur in a path' };
  if (pattern[0] !== '/' && pattern[0] !== '*') return { ok: false, reason: 'a path glob starts with "/" or "*"' };
  const segments = pattern.split('/');
  const last = segments.length - 1;
  let source = '';
  let skipSeparator = true;
  for (let i = 0; i <= last; i++) {
    const segment = segments[i]!;
    if (segment === '**') {
      if (i === 0 && i === last) source += '[\\s\\S]*';
      else if (i === 0) source += '(?:[\\s\\S]*/)?';
      else if (i === last) source += '(?:/[\\s\\S]*)?';
      else source += '/(?:[\\s\\S]*/)?';
      skipSeparator = true;
      continue;
    }
    const part = segmentSource(segment);
    if (part === null) return { ok: false, reason: '"**" must be a whole path segment, like /a/**/b' };
    source += (skipSeparator ? '' : '/') + part;
    skipSeparator = false;
  }
  const regex = new RegExp(`^${source}$`);
  return { ok: true, glob: { pattern, test: (path) => regex.test(path) } };
}

const UNRESERVED = /[A-Za-z0-9\-._~]/;

/**
 * The path a server acts on, for matching: the query and fragment cut off, percent-encoded
 * unreserved characters decoded (`/%61dmin` -> `/admin`), other escapes uppercased, and dot
 * segments removed (`/a/../admin` -> `/admin`, RFC 3986 section 5.2.4). Case is kept.
 */
export function normalizePath(raw: string): string {
  let path = raw;
  const cut = path.search(/[?#]/);
  if (cut >= 0) path = path.slice(0, cut);
  if (path.includes('%')) {
    path = path.replace(/%([0-9A-Fa-f]{2})/g, (escape, hex: string) => {
      const c = String.fromCharCode(parseInt(hex, 16));
      return UNRESERVED.test(c) ? c : escape.toUpperCase();
    });
  }
  if (!path.includes('/.')) return path;
  const segments = path.split('/');
  const out: string[] = [];
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i]!;
    if (s === '.' || s === '..') {
      if (s === '..' && out.length > 1) out.pop();
      if (i === segments.length - 1) out.push('');
    } else {
      out.push(s);
    }
  }
  return out.join('/');
}
