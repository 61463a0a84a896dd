/**
 * Loading and validating the YAML config (docs/config.md is the reference). Every problem is
 * reported as a ConfigError `FILE:LINE:COL: message` at the offending node, all of them at
 * once; unknown keys are errors, with a suggestion for near misses.
 */
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { isScalar, LineCounter, parseDocument, type Node } from 'yaml';
import { ConfigError, FlowgateError } from '../errors.js';
import { parseIp } from './cidr.js';
import { readDecide, readRules, type ListCache } from './config-rules.js';
import { Reader, type Field } from './config-reader.js';
import { defaultConfig, type Config, type Limits, type Marks, type Timeouts } from './config-types.js';

export * from './config-types.js';

/** Top-level keys. */
export const CONFIG_KEYS = [
  'queue', 'queues', 'default', 'decision_timeout_ms', 'on_timeout', 'block_action', 'tls_alert', 'rules',
  'decide', 'on_error', 'metrics', 'control', 'on_shutdown', 'on_conflict', 'on_ambiguous', 'on_invalid',
  'on_limit', 'midstream', 'fail_open', 'queue_maxlen', 'handshake_log', 'marks', 'limits', 'timeouts', 'log_format',
] as const;

const LIMIT_KEYS: Record<string, keyof Limits> = {
  max_flows: 'maxFlows',
  max_inspecting_flows: 'maxInspectingFlows',
  max_held_packets_per_flow: 'maxHeldPacketsPerFlow',
  max_held_bytes_per_flow: 'maxHeldBytesPerFlow',
  max_ooo_bytes_per_flow: 'maxOooBytesPerFlow',
  max_held_bytes_total: 'maxHeldBytesTotal',
  max_hello_bytes: 'maxHelloBytes',
  max_request_head_bytes: 'maxRequestHeadBytes',
};
const TIMEOUT_KEYS: Record<string, keyof Timeouts> = {
  syn_s: 'synS',
  established_s: 'establishedS',
  closing_s: 'closingS',
  inspecting_s: 'inspectingS',
};
const MARK_KEYS = ['mask', 'allow', 'block', 'inspect', 'answer'] as const;
const VERDICTS = ['allow', 'block'] as const;

/** Thrown by loadConfig: every problem found, one `FILE:LINE:COL: message` per line. */
export class ConfigLoadError extends FlowgateError {
  readonly errors: readonly ConfigError[];
  constructor(errors: readonly ConfigError[]) {
    super('ERR_CONFIG', errors.map((e) => e.message).join('\n'));
    this.name = 'ConfigLoadError';
    this.errors = errors;
  }
}

/** Result of parseConfig: a config when there were no errors. */
export interface ParsedConfig {
  config?: Config;
  errors: ConfigError[];
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

function readMarks(r: Reader, field: Field, marks: Marks): void {
  const f = r.fields(field.value, '"marks"', MARK_KEYS, field.keyNode);
  if (f === null) return;
  const nodes = new Map<keyof Marks, Field>();
  for (const key of MARK_KEYS) {
    const item = f.get(key);
    if (item === undefined) continue;
    const raw = isScalar(item.value) ? item.value.value : undefined;
    const value = typeof raw === 'string' && /^(?:0x[0-9a-f]{1,8}|\d{1,10})$/i.test(raw) ? Number(raw) : raw;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 0xffffffff) {
      r.fieldError(item, `"${key}" must be a 32-bit mark, a number or hex string like 0x100`);
      continue;
    }
    marks[key] = value;
    nodes.set(key, item);
  }
  const at = (key: keyof Marks): Node | null => nodes.get(key)?.value ?? nodes.get('mask')?.value ?? field.keyNode;
  if (marks.mask === 0) r.error(at('mask'), '"mask" must not be 0');
  const seen = new Map<number, keyof Marks>();
  const named = (key: keyof Marks): string => `the ${key} mark${nodes.has(key) ? '' : ' (default)'}`;
  for (const key of ['allow', 'block', 'inspect'] as const) {
    const value = marks[key];
    const earlier = seen.get(value);
    if (value === 0) r.error(at(key), `the ${key} mark must not be 0`);
    else if ((value & ~marks.mask) >>> 0 !== 0) {
      r.error(at(key), `${named(key)} ${hex(value)} has bits outside the mask ${hex(marks.mask)}`);
    } else if (earlier !== undefined) {
      const [blame, other] = nodes.has(key) || !nodes.has(earlier) ? [key, earlier] : [earlier, key];
      r.error(at(blame), `${named(blame)} ${hex(value)} is the same as ${named(other)}`);
    }
    seen.set(value, key);
  }
  if (!nodes.has('answer') && nodes.has('mask')) {
    // Marks of one's own (other rules use marks): the answer bit, which the rules save into
    // connmarks and test in packet marks, is taken only when named.
    marks.answer = 0;
  } else if ((marks.answer & marks.mask) >>> 0 !== 0) {
    r.error(at('answer'), `the answer mark ${hex(marks.answer)} overlaps the mask ${hex(marks.mask)}: it must be bits of its own (0 turns it off)`);
  }
}

function readMetrics(r: Reader, field: Field): Config['metrics'] | undefined {
  const raw = isScalar(field.value) ? field.value.value : undefined;
  if (raw === null || raw === false) return null;
  const match = typeof raw === 'string' ? /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(raw) : null;
  const host = match?.[1] ?? match?.[2];
  const port = Number(match?.[3]);
  const addr = host === undefined ? null : parseIp(host);
  if (match === null || host === undefined || !(port >= 1 && port <= 65535) || (addr === null && host !== 'localhost')) {
    r.fieldError(field, '"metrics" must be "ADDRESS:PORT" with an IP address or localhost, like "127.0.0.1:9475" or "[::1]:9475"');
    return undefined;
  }
  if (addr !== null && addr.words.every((w) => w === 0)) {
    r.fieldError(field, `"metrics" must name a loopback or specific address, not the wildcard ${host}`);
    return undefined;
  }
  return { host, port };
}

function readQueues(r: Reader, f: Map<string, Field>, config: Config): void {
  const queue = f.get('queue');
  const queues = f.get('queues');
  if (queue !== undefined && queues !== undefined) {
    r.error(queues.keyNode, '"queue" and "queues" exclude each other; use one');
    return;
  }
  if (queue !== undefined) {
    const n = r.integer(queue, 0, 65535);
    if (n !== undefined) config.queues = { first: n, last: n };
  }
  if (queues !== undefined) {
    const raw = isScalar(queues.value) ? queues.value.value : undefined;
    const match = typeof raw === 'string' ? /^(\d{1,5}):(\d{1,5})$/.exec(raw) : null;
    const first = Number(match?.[1]);
    const last = Number(match?.[2]);
    if (match === null || first > last || last > 65535) {
      r.fieldError(queues, '"queues" must be "A:B" with queue numbers 0 <= A <= B <= 65535, like "0:3"');
    } else config.queues = { first, last };
  }
}

function readNumbers<T extends object>(r: Reader, field: Field, names: Record<string, keyof T>, target: T, read: (f: Field) => number | undefined): void {
  const f = r.fields(field.value, `"${field.name}"`, Object.keys(names), field.keyNode);
  if (f === null) return;
  for (const [key, item] of f) {
    const value = read(item);
    if (value !== undefined) (target as Record<keyof T, number>)[names[key]!] = value;
  }
}

/**
 * Validates config text. `file` names it in messages and anchors relative paths (`lists`,
 * `decide.module`, `control`); list files are read here, synchronously.
 */
export function parseConfig(text: string, file: string): ParsedConfig {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const r = new Reader(file, lines, doc);
  const problems = [...doc.errors, ...doc.warnings];
  if (problems.length > 0) {
    for (const e of problems) {
      const { line, col } = lines.linePos(e.pos[0]);
      r.errors.push(new ConfigError(file, line, col, e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')));
    }
    return { errors: r.errors };
  }
  const config = defaultConfig();
  config.file = resolve(file);
  const baseDir = dirname(config.file);
  const root = doc.contents as Node | null;
  if (root === null || (isScalar(root) && root.value === null)) return { config, errors: [] };
  const f = r.fields(root, 'the config', CONFIG_KEYS);
  if (f === null) return { errors: r.errors };

  readQueues(r, f, config);
  const set = <K extends keyof Config>(key: string, target: K, read: (field: Field) => Config[K] | undefined): void => {
    const field = f.get(key);
    if (field === undefined) return;
    const value = read(field);
    if (value !== undefined) config[target] = value;
  };
  set('default', 'default', (x) => r.oneOf(x, VERDICTS));
  set('decision_timeout_ms', 'decisionTimeoutMs', (x) => r.integer(x, 1, 3600000, ' ms'));
  set('on_timeout', 'onTimeout', (x) => r.oneOf(x, VERDICTS));
  set('block_action', 'blockAction', (x) => r.oneOf(x, ['reset', 'drop', 'page'] as const));
  set('tls_alert', 'tlsAlert', (x) => r.bool(x));
  set('on_error', 'onError', (x) => r.oneOf(x, VERDICTS));
  set('on_shutdown', 'onShutdown', (x) => r.oneOf(x, VERDICTS));
  set('on_conflict', 'onConflict', (x) => r.oneOf(x, ['block', 'drop-packet'] as const));
  set('on_ambiguous', 'onAmbiguous', (x) => r.oneOf(x, ['block', 'allow'] as const));
  set('on_invalid', 'onInvalid', (x) => r.oneOf(x, ['block', 'allow'] as const));
  set('on_limit', 'onLimit', (x) => r.oneOf(x, ['block', 'allow'] as const));
  set('midstream', 'midstream', (x) => r.oneOf(x, ['inspect', 'allow', 'block'] as const));
  set('fail_open', 'failOpen', (x) => r.bool(x));
  set('queue_maxlen', 'queueMaxlen', (x) => r.integer(x, 1, 0xffffffff, ' packets'));
  set('handshake_log', 'handshakeLog', (x) => r.bool(x));
  set('log_format', 'logFormat', (x) => r.oneOf(x, ['json', 'pretty'] as const));
  set('metrics', 'metrics', (x) => readMetrics(r, x));
  set('control', 'control', (x) => {
    if (isScalar(x.value) && x.value.value === false) return null;
    const path = r.string(x);
    return path === undefined ? undefined : resolve(baseDir, path);
  });
  const lists: ListCache = new Map();
  set('rules', 'rules', (x) => readRules(r, x, baseDir, lists));
  set('decide', 'decide', (x) => readDecide(r, x, baseDir) ?? undefined);
  const marks = f.get('marks');
  if (marks !== undefined) readMarks(r, marks, config.marks);
  const limits = f.get('limits');
  if (limits !== undefined) {
    readNumbers(r, limits, LIMIT_KEYS, config.limits, (x) => r.integer(x, 1, Number.MAX_SAFE_INTEGER));
  }
  const timeouts = f.get('timeouts');
  if (timeouts !== undefined) {
    readNumbers(r, timeouts, TIMEOUT_KEYS, config.timeouts, (x) => r.number(x, 0.001, 31536000, ' s'));
  }
  if (r.errors.length > 0) return { errors: sortErrors(file, r.errors) };
  return { config, errors: [] };
}

/** Errors of the config file first, in file order, then those of list files. */
function sortErrors(file: string, errors: ConfigError[]): ConfigError[] {
  const order = new Map<string, number>([[file, 0]]);
  for (const e of errors) if (!order.has(e.file)) order.set(e.file, order.size);
  return [...errors].sort((a, b) => order.get(a.file)! - order.get(b.file)! || a.line - b.line || a.col - b.col);
}

/** Reads and validates a config file; throws ConfigLoadError listing every problem. */
export async function loadConfig(path: string): Promise<Config> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigLoadError([new ConfigError(path, 1, 1, `cannot read config file: ${(err as Error).message}`)]);
  }
  const { config, errors } = parseConfig(text, path);
  if (config === undefined) throw new ConfigLoadError(errors);
  return config;
}
