/**
 * Host name normalisation shared by the TLS and HTTP analyzers and the policy: one place decides
 * what "the same name" means (EVASION.md 15, 23, 24).
 */

/** Longest host name accepted, in octets without the trailing dot (RFC 1035). */
export const MAX_NAME_LENGTH = 253;

/** A name as the policy compares it: lowercase, no trailing dot, no port, IPv6 without brackets. */
export type NormalizedHost =
  | { ok: true; name: string; kind: 'dns' | 'ipv4' | 'ipv6'; port?: number }
  | { ok: false; reason: string };

const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;
const IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;
const IPV6 = /^[0-9a-f:.]+$/;

/**
 * Names normalised lately, by raw text, for each of the two functions below (entries kept before
 * a cache is emptied). Hosts repeat (one per request or hello, a few distinct ones per client),
 * and a hit spares a regular expression per label. The results are shared: callers never modify them.
 */
export const NAME_CACHE_ENTRIES = 1024;

/** `normalize` with its results remembered by raw text (the cache is emptied when full). */
function cached(normalize: (raw: string) => NormalizedHost): (raw: string) => NormalizedHost {
  const cache = new Map<string, NormalizedHost>();
  return (raw) => {
    let result = cache.get(raw);
    if (result === undefined) {
      if (cache.size >= NAME_CACHE_ENTRIES) cache.clear();
      result = normalize(raw);
      cache.set(raw, result);
    }
    return result;
  };
}

/**
 * Normalises a DNS name or IP literal without a port (a TLS SNI value, a list entry).
 * Raw non-ASCII bytes are malformed: IDNs travel as A-labels (xn--).
 */
export const normalizeName: (raw: string) => NormalizedHost = cached(normalizeNameUncached);

function normalizeNameUncached(raw: string): NormalizedHost {
  let name = raw.toLowerCase();
  if (name.endsWith('.')) name = name.slice(0, -1);
  if (name.length === 0) return { ok: false, reason: 'empty name' };
  if (name.length > MAX_NAME_LENGTH) return { ok: false, reason: 'name too long' };
  if (IPV4.test(name)) return { ok: true, name, kind: 'ipv4' };
  if (name.includes(':')) {
    return IPV6.test(name) && isIPv6(name)
      ? { ok: true, name, kind: 'ipv6' }
      : { ok: false, reason: 'malformed IPv6 literal' };
  }
  for (const label of name.split('.')) {
    if (!LABEL.test(label)) {
      // eslint-disable-next-line no-control-regex
      if (/[^\x21-\x7e]/.test(label)) return { ok: false, reason: 'non-ASCII or control character in name' };
      return { ok: false, reason: `malformed label "${label}"` };
    }
  }
  return { ok: true, name, kind: 'dns' };
}

/**
 * Normalises an HTTP Host header value or authority ("Example.COM.:8080", "[::1]:80").
 * Userinfo is rejected: it has no place in Host (RFC 9110 section 7.2).
 */
export const normalizeAuthority: (raw: string) => NormalizedHost = cached(normalizeAuthorityUncached);

function normalizeAuthorityUncached(raw: string): NormalizedHost {
  const value = raw.trim();
  if (value.includes('@')) return { ok: false, reason: 'userinfo in authority' };
  let host = value;
  let portText: string | undefined;
  if (value.startsWith('[')) {
    const close = value.indexOf(']');
    if (close < 0) return { ok: false, reason: 'unterminated IPv6 literal' };
    host = value.slice(1, close);
    const rest = value.slice(close + 1);
    if (rest.length > 0) {
      if (!rest.startsWith(':')) return { ok: false, reason: 'junk after IPv6 literal' };
      portText = rest.slice(1);
    }
    if (!host.includes(':')) return { ok: false, reason: 'bracketed name is not IPv6' };
  } else {
    const colon = value.lastIndexOf(':');
    if (colon >= 0) {
      if (value.indexOf(':') !== colon) return { ok: false, reason: 'IPv6 literal without brackets' };
      host = value.slice(0, colon);
      portText = value.slice(colon + 1);
    }
  }
  let port: number | undefined;
  if (portText !== undefined && portText.length > 0) {
    if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) return { ok: false, reason: 'bad port' };
    port = Number(portText);
  }
  const result = normalizeName(host);
  if (!result.ok || port === undefined) return result;
  return { ...result, port };
}

function isIPv6(text: string): boolean {
  const parts = text.split('::');
  if (parts.length > 2) return false;
  const groups = parts.flatMap((p) => (p.length === 0 ? [] : p.split(':')));
  let count = 0;
  for (let i = 0; i < groups.length; i++) {
    const g = groups[i]!;
    if (i === groups.length - 1 && g.includes('.')) {
      if (!IPV4.test(g)) return false;
      count += 2;
    } else if (/^[0-9a-f]{1,4}$/.test(g)) count += 1;
    else return false;
  }
  return parts.length === 2 ? count < 8 : count === 8;
}
