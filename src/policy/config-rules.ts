/**
 * Reading the `rules` and `decide` sections of a config (config.ts reads the rest). List and
 * module files named there are read here, synchronously, relative to the config's folder.
 */
import { readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { isMap, isScalar, isSeq, type Node } from 'yaml';
import { ConfigError } from '../errors.js';
import { parseCidr } from './cidr.js';
import type { DecideConfig, DomainList, PortRange, RuleConfig } from './config-types.js';
import type { Field, Reader } from './config-reader.js';
import { DomainSet, parseDomainEntry } from './domains.js';
import { compileGlob } from './glob.js';
import { parseDomainList } from './lists.js';
import type { AppKind } from './types.js';

/** Keys a rule may have. */
export const RULE_KEYS = [
  'name', 'action', 'domains', 'lists', 'clients', 'ports', 'app', 'methods', 'paths', 'alpn', 'ja4', 'ech', 'named',
] as const;

/** Keys of `decide.webhook`. */
export const WEBHOOK_KEYS = [
  'url', 'timeout_ms', 'cache_ttl_s', 'error_cache_ttl_s', 'max_sockets', 'max_cache_entries', 'cache_by_client',
] as const;

const RULE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/;
const METHOD = /^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,32}$/;
// JA4: a 10-character prefix (protocol, version, sni, counts, alpn), then two 12-digit hashes.
const JA4 = /^[a-z0-9]{10}_[0-9a-f]{12}_[0-9a-f]{12}$/;
const APPS: readonly AppKind[] = ['tls', 'http', 'unknown'];

/** List files already read during one parse, by absolute path (null: could not be read). */
export type ListCache = Map<string, DomainList | null>;

function readList(r: Reader, path: string, node: Node, cache: ListCache): DomainList | null {
  if (cache.has(path)) return cache.get(path)!;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    r.error(node, `cannot read list file "${path}": ${(err as Error).message}`);
    cache.set(path, null);
    return null;
  }
  const set = new DomainSet();
  for (const problem of parseDomainList(text, path, set)) {
    r.errors.push(new ConfigError(path, problem.line, problem.col, problem.message));
  }
  set.seal();
  const list = { path, set };
  cache.set(path, list);
  return list;
}

function parsePorts(value: string | number | boolean): PortRange | null {
  const text = String(value);
  const match = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(text);
  if (typeof value === 'boolean' || match === null) return null;
  const from = Number(match[1]);
  const to = match[2] === undefined ? from : Number(match[2]);
  if (from < 1 || to > 65535 || from > to) return null;
  return { from, to };
}

/** What an item parser returns for a bad item: the message. */
interface Bad {
  bad: string;
}
const bad = (message: string): Bad => ({ bad: message });
const isBad = (x: unknown): x is Bad => typeof x === 'object' && x !== null && 'bad' in x;

/** Reads each item of a list field through `parse`; null when absent or unusable. */
function eachItem<T>(r: Reader, field: Field | undefined, parse: (value: string | number | boolean) => T | Bad): T[] | null {
  if (field === undefined) return null;
  const items = r.items(field);
  if (items === undefined) return null;
  const out: T[] = [];
  for (const { value, node } of items) {
    const parsed = parse(value);
    if (isBad(parsed)) r.error(node, parsed.bad);
    else out.push(parsed);
  }
  return out;
}

/** An item parser for text items checked by `check` (which returns an error message or null). */
function text(what: string, check: (s: string) => string | null) {
  return (value: string | number | boolean): string | Bad => {
    if (typeof value !== 'string') return bad(`bad ${what} ${JSON.stringify(value)}: expected text`);
    const problem = check(value);
    return problem === null ? value : bad(problem);
  };
}

function readRule(r: Reader, node: Node, baseDir: string, lists: ListCache, names: Map<string, number>): RuleConfig | null {
  const f = r.fields(node, 'a rule', RULE_KEYS);
  if (f === null) return null;
  const line = r.position(node).line;
  const nameField = f.get('name');
  let name: string | undefined;
  if (nameField === undefined) r.error(node, 'rule is missing "name"');
  else {
    name = r.string(nameField);
    if (name !== undefined && !RULE_NAME.test(name)) {
      r.fieldError(nameField, `rule name "${name}" must be 1-64 letters, digits, "_", ".", ":" or "-", starting with a letter or digit`);
      name = undefined;
    } else if (name !== undefined && names.has(name)) {
      r.fieldError(nameField, `duplicate rule name "${name}" (first used on line ${names.get(name)})`);
      name = undefined;
    } else if (name !== undefined) names.set(name, line);
  }
  const actionField = f.get('action');
  if (actionField === undefined) r.error(node, `rule${name ? ` "${name}"` : ''} is missing "action" (allow or block)`);
  const action = actionField && r.oneOf(actionField, ['allow', 'block'] as const);
  const domains = eachItem(r, f.get('domains'), (value) => {
    const entry = parseDomainEntry(String(value));
    if (typeof value !== 'string') return bad(`bad domain ${JSON.stringify(value)}: expected a name`);
    if (!entry.ok) return bad(`bad domain "${value}": ${entry.reason}`);
    return entry.exact ? `=${entry.name}` : entry.name;
  });
  let loaded: DomainList[] | null = null;
  const listsField = f.get('lists');
  if (listsField !== undefined) {
    loaded = [];
    for (const { value, node: item } of r.items(listsField) ?? []) {
      if (typeof value !== 'string') {
        r.error(item, `bad list file ${JSON.stringify(value)}: expected a file path`);
        continue;
      }
      const list = readList(r, resolve(baseDir, value), item, lists);
      if (list !== null && !loaded.includes(list)) loaded.push(list);
    }
  }
  const clients = eachItem(r, f.get('clients'), (value) => {
    const parsed = parseCidr(String(value));
    return parsed.ok ? parsed.cidr.text : bad(`bad address or CIDR ${JSON.stringify(value)}: ${parsed.reason}`);
  });
  const ports = eachItem(r, f.get('ports'), (value) =>
    parsePorts(value) ?? bad(`bad port ${JSON.stringify(value)}: ports are 1-65535, or ranges like 8000-8999`));
  const app = eachItem(r, f.get('app'), (value) =>
    APPS.includes(value as AppKind) ? (value as AppKind) : bad(`"app" must be tls, http or unknown, not ${JSON.stringify(value)}`));
  const methods = eachItem(r, f.get('methods'), text('method', (s) => (METHOD.test(s) ? null : `bad method "${s}": not an HTTP method token`)));
  const paths = eachItem(r, f.get('paths'), text('glob', (s) => {
    const glob = compileGlob(s);
    return glob.ok ? null : `bad glob "${s}": ${glob.reason}`;
  }));
  const alpn = eachItem(r, f.get('alpn'), text('ALPN id', (s) =>
    // eslint-disable-next-line no-control-regex
    s.length <= 255 && !/[^\x21-\x7e]/.test(s) ? null : `bad ALPN id "${s}": 1-255 printable characters`));
  const ja4 = eachItem(r, f.get('ja4'), text('JA4 fingerprint', (s) =>
    JA4.test(s.toLowerCase()) ? null : `bad JA4 fingerprint "${s}": expected like t13d1516h2_8daaf6152771_e5627efa2ab1`));
  const echField = f.get('ech');
  const ech = echField === undefined ? null : (r.bool(echField) ?? null);
  const namedField = f.get('named');
  const named = namedField === undefined ? null : (r.bool(namedField) ?? null);
  if (name === undefined || action === undefined) return null;
  return {
    name,
    action,
    domains,
    lists: loaded,
    clients,
    ports,
    app: app === null ? null : [...new Set(app)],
    methods: methods?.map((m) => m.toUpperCase()) ?? null,
    paths,
    alpn,
    ja4: ja4?.map((j) => j.toLowerCase()) ?? null,
    ech,
    named,
    line,
  };
}

/** Reads `rules` (a list of rule mappings; empty means no rules). */
export function readRules(r: Reader, field: Field, baseDir: string, lists: ListCache): RuleConfig[] {
  const node = field.value;
  if (node === null || (isScalar(node) && node.value === null)) return [];
  if (!isSeq(node)) {
    r.fieldError(field, '"rules" must be a list of rules');
    return [];
  }
  const names = new Map<string, number>();
  const rules: RuleConfig[] = [];
  for (const item of node.items as Node[]) {
    const rule = readRule(r, r.resolve(item) ?? item, baseDir, lists, names);
    if (rule !== null) rules.push(rule);
  }
  return rules;
}

function readWebhook(r: Reader, field: Field): DecideConfig | null {
  const defaults = { timeoutMs: 500, cacheTtlS: 60, errorCacheTtlS: 5, maxSockets: 16, maxCacheEntries: 100000, cacheByClient: false };
  let urlField: Field | undefined;
  let f: Map<string, Field> | null = null;
  if (isScalar(field.value) && typeof field.value.value === 'string') urlField = { ...field, name: 'url' };
  else {
    f = r.fields(field.value, '"webhook"', WEBHOOK_KEYS, field.keyNode);
    if (f === null) return null;
    urlField = f.get('url');
    if (urlField === undefined) {
      r.fieldError(field, '"webhook" is missing "url"');
      return null;
    }
  }
  const text = r.string(urlField);
  let url: string | undefined;
  if (text !== undefined) {
    let parsed: URL | undefined;
    try {
      parsed = new URL(text);
    } catch {
      parsed = undefined;
    }
    if (parsed === undefined || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) {
      r.fieldError(urlField, `bad webhook URL "${text}": expected http://HOST:PORT/PATH or https://...`);
    } else url = parsed.href;
  }
  const get = <T>(key: string, read: (field: Field) => T | undefined, fallback: T): T | undefined => {
    const field = f?.get(key);
    return field === undefined ? fallback : read(field);
  };
  const timeoutMs = get('timeout_ms', (x) => r.integer(x, 1, 600000, ' ms'), defaults.timeoutMs);
  const cacheTtlS = get('cache_ttl_s', (x) => r.number(x, 0, 86400 * 365, ' s'), defaults.cacheTtlS);
  const errorCacheTtlS = get('error_cache_ttl_s', (x) => r.number(x, 0, 86400 * 365, ' s'), defaults.errorCacheTtlS);
  const maxSockets = get('max_sockets', (x) => r.integer(x, 1, 4096), defaults.maxSockets);
  const maxCacheEntries = get('max_cache_entries', (x) => r.integer(x, 1, 16_000_000), defaults.maxCacheEntries);
  const cacheByClient = get('cache_by_client', (x) => r.bool(x), defaults.cacheByClient);
  if (url === undefined || timeoutMs === undefined || cacheTtlS === undefined || errorCacheTtlS === undefined ||
    maxSockets === undefined || maxCacheEntries === undefined || cacheByClient === undefined) return null;
  return { kind: 'webhook', url, timeoutMs, cacheTtlS, errorCacheTtlS, maxSockets, maxCacheEntries, cacheByClient };
}

/** Reads `decide` (exactly one of `webhook`, `module`). */
export function readDecide(r: Reader, field: Field, baseDir: string): DecideConfig | null {
  const f = r.fields(field.value, '"decide"', ['webhook', 'module'], field.keyNode);
  if (f === null) return null;
  const webhook = f.get('webhook');
  const module = f.get('module');
  if (webhook !== undefined && module !== undefined) {
    r.error(module.keyNode, '"decide" takes one of "webhook" or "module", not both');
    return null;
  }
  if (webhook !== undefined) return readWebhook(r, webhook);
  if (module === undefined) {
    r.fieldError(field, '"decide" needs "webhook" or "module"');
    return null;
  }
  if (isMap(module.value)) {
    r.fieldError(module, '"module" must be the path of a JavaScript module');
    return null;
  }
  const text = r.string(module);
  if (text === undefined) return null;
  const path = resolve(baseDir, text);
  try {
    if (!statSync(path).isFile()) throw new Error('not a regular file');
  } catch (err) {
    r.fieldError(module, `cannot read module file "${path}": ${(err as Error).message}`);
    return null;
  }
  return { kind: 'module', path };
}
