/**
 * Reading typed values out of a YAML document while remembering where they were, so every
 * problem becomes a `FILE:LINE:COL: message` ConfigError pointing at the offending node.
 * The reader collects errors and keeps going; a value that failed reads as undefined.
 */
import { isAlias, isMap, isScalar, isSeq, type Document, type LineCounter, type Node } from 'yaml';
import { ConfigError } from '../errors.js';

/** One `key: value` pair of a mapping, with both nodes for error positions. */
export interface Field {
  /** The key as written. */
  name: string;
  keyNode: Node;
  /** The value node, aliases followed; null when the value is empty (`key:`). */
  value: Node | null;
  /** The value node as written (an alias stays an alias), for error positions. */
  written: Node | null;
}

/** The value as a plain JavaScript scalar, or undefined when the node is not a scalar. */
function scalarValue(node: Node | null): unknown {
  if (node === null) return null;
  return isScalar(node) ? node.value : undefined;
}

/** Edit distance counting a swap of neighbours as one edit, for "did you mean". */
function distance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 0; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, d[i - 2]![j - 2]! + 1);
      d[i]![j] = best;
    }
  }
  return d[a.length]![b.length]!;
}

/** The known key closest to an unknown one, if it is close enough to be a typo. */
export function suggest(unknown: string, known: readonly string[]): string | undefined {
  const lower = unknown.toLowerCase();
  const extended = known.find((k) => lower.length >= 3 && k.startsWith(lower));
  if (extended !== undefined) return extended;
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const d = distance(unknown.toLowerCase(), candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  const allowed = Math.max(1, Math.min(3, Math.floor(unknown.length / 3)));
  return bestDistance <= allowed ? best : undefined;
}

/** How a value reads in a message: `"text"`, `5`, `nothing`, `a list`, `a mapping`. */
function describe(node: Node | null): string {
  if (isSeq(node)) return 'a list';
  if (isMap(node)) return 'a mapping';
  const value = scalarValue(node);
  if (value === null) return 'nothing';
  if (typeof value === 'string') return JSON.stringify(value);
  return String(value);
}

/** An empty value (`key:` with nothing after it). */
function isEmpty(node: Node | null): boolean {
  return node === null || (isScalar(node) && node.value === null && node.range?.[0] === node.range?.[1]);
}

/** Collects errors against one file; see the module comment. */
export class Reader {
  readonly errors: ConfigError[] = [];

  constructor(
    readonly file: string,
    private readonly lines: LineCounter,
    private readonly doc: Document,
  ) {}

  /** 1-based line and column of a node (of `fallback` when the node has no position). */
  position(node: Node | null, fallback?: Node | null): { line: number; col: number } {
    const range = node?.range ?? fallback?.range;
    if (!range) return { line: 1, col: 1 };
    return this.lines.linePos(range[0]);
  }

  /** Records an error at a node. */
  error(node: Node | null, message: string, fallback?: Node | null): void {
    const { line, col } = this.position(node, fallback);
    this.errors.push(new ConfigError(this.file, line, col, message));
  }

  /** Records an error at a field's value (at its key when the value is empty). */
  fieldError(field: Field, message: string): void {
    this.error(isEmpty(field.written) ? field.keyNode : field.written, message, field.keyNode);
  }

  /** Follows an alias (`*name`) to the node it stands for. */
  resolve(node: Node | null): Node | null {
    if (node !== null && isAlias(node)) return (node.resolve(this.doc) as Node | undefined) ?? null;
    return node;
  }

  /**
   * The pairs of a mapping, by key. Reports a non-mapping (as `what`), non-string keys and
   * unknown keys (with a suggestion); returns null when the node is not a mapping.
   */
  fields(node: Node | null, what: string, known: readonly string[], keyNode?: Node): Map<string, Field> | null {
    const map = this.resolve(node);
    if (!isMap(map)) {
      this.error(map, `${what} must be a mapping of keys to values`, keyNode);
      return null;
    }
    const out = new Map<string, Field>();
    for (const pair of map.items) {
      const key = pair.key as Node | null;
      const name = scalarValue(key);
      if (typeof name !== 'string') {
        this.error(key, `keys must be names, not ${describe(key)}`, map);
        continue;
      }
      if (!known.includes(name)) {
        const hint = suggest(name, known);
        this.error(key, `unknown key "${name}"${hint ? `; did you mean "${hint}"?` : ''}`);
        continue;
      }
      const written = (pair.value as Node | null) ?? null;
      out.set(name, { name, keyNode: key!, value: this.resolve(written), written });
    }
    return out;
  }

  /** A non-empty string. */
  string(field: Field): string | undefined {
    const value = scalarValue(field.value);
    if (typeof value === 'string' && value.length > 0) return value;
    this.fieldError(field, `"${field.name}" must be a non-empty string, not ${describe(field.value)}`);
    return undefined;
  }

  /** One of a few words. */
  oneOf<T extends string>(field: Field, words: readonly T[]): T | undefined {
    const value = scalarValue(field.value);
    if (typeof value === 'string' && (words as readonly string[]).includes(value)) return value as T;
    const list = words.length === 2 ? `${words[0]} or ${words[1]}` : `one of ${words.join(', ')}`;
    this.fieldError(field, `"${field.name}" must be ${list}, not ${describe(field.value)}`);
    return undefined;
  }

  /** true or false (YAML 1.2: `yes`/`on` are strings, not booleans). */
  bool(field: Field): boolean | undefined {
    const value = scalarValue(field.value);
    if (typeof value === 'boolean') return value;
    this.fieldError(field, `"${field.name}" must be true or false, not ${describe(field.value)}`);
    return undefined;
  }

  /** An integer within [min, max] (decimal, or 0x hex). */
  integer(field: Field, min: number, max: number, unit = ''): number | undefined {
    const value = scalarValue(field.value);
    if (typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max) return value;
    this.fieldError(field, `"${field.name}" must be an integer from ${min} to ${max}${unit}, not ${describe(field.value)}`);
    return undefined;
  }

  /** A number within [min, max], fractions allowed. */
  number(field: Field, min: number, max: number, unit = ''): number | undefined {
    const value = scalarValue(field.value);
    if (typeof value === 'number' && Number.isFinite(value) && value >= min && value <= max) return value;
    this.fieldError(field, `"${field.name}" must be a number from ${min} to ${max}${unit}, not ${describe(field.value)}`);
    return undefined;
  }

  /**
   * The scalar items of a list (a single scalar counts as a one-item list), each with its node.
   * Reports collections inside the list, null items and an empty list.
   */
  items(field: Field): { value: string | number | boolean; node: Node }[] | undefined {
    const node = field.value;
    const raw: Node[] = isSeq(node) ? (node.items as Node[]) : isScalar(node) && node.value !== null ? [node] : [];
    if (!isSeq(node) && raw.length === 0) {
      this.fieldError(field, `"${field.name}" must be a list`);
      return undefined;
    }
    if (raw.length === 0) {
      this.fieldError(field, `"${field.name}" must not be empty (leave the key out instead)`);
      return undefined;
    }
    const out: { value: string | number | boolean; node: Node }[] = [];
    let ok = true;
    for (const item of raw) {
      const resolved = this.resolve(item);
      const value = scalarValue(resolved);
      if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') {
        out.push({ value, node: item });
      } else {
        this.error(item, `items of "${field.name}" must be single values, not ${describe(resolved)}`, node);
        ok = false;
      }
    }
    return ok ? out : undefined;
  }
}
