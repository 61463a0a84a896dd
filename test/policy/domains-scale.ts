/**
 * Measures a million-entry domain list: load time, heap growth and lookups per second.
 * Not a tap test (its timings depend on the machine). Run from the repository root:
 *
 *   TS_NODE_TRANSPILE_ONLY=1 node --expose-gc --import @tapjs/typescript/import \
 *     test/policy/domains-scale.ts [ENTRIES]
 *
 * or, after `npm run build:ts`: node --expose-gc dist/test/policy/domains-scale.js [ENTRIES]
 *
 * It writes a hosts-format list of ENTRIES (default 1,000,000) pseudo-random names to a temp
 * folder, then reports: the file size; the time to read and parse it into a DomainSet (the
 * target is under 3 s), wall clock and CPU (the CPU figure is steadier on a busy machine); the memory held by the set after a forced GC (`heapUsed` plus
 * `arrayBuffers`, the set's tables being typed arrays, minus before); lookups per second for names below a listed entry (hits) and names not in
 * the list (misses), both four labels deep.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DomainSet } from '../../src/policy/domains.js';
import { parseDomainList } from '../../src/policy/lists.js';

const count = Number(process.argv[2] ?? 1_000_000);
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) console.error('warning: run with --expose-gc for a meaningful heap figure');

// A small deterministic generator so runs are comparable.
let seed = 12345;
function random(): number {
  seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff;
  return seed / 0x80000000;
}
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';
function label(min: number, max: number): string {
  const length = min + Math.floor(random() * (max - min + 1));
  let out = '';
  for (let i = 0; i < length; i++) out += ALPHABET[Math.floor(random() * 26)];
  return out;
}
const TLDS = ['com', 'net', 'org', 'io', 'de', 'example', 'test'];
const names: string[] = [];
for (let i = 0; i < count; i++) {
  const labels = 1 + Math.floor(random() * 3);
  const parts: string[] = [];
  for (let j = 0; j < labels; j++) parts.push(label(3, 12));
  parts.push(TLDS[Math.floor(random() * TLDS.length)]!);
  names.push(parts.join('.'));
}

const dir = mkdtempSync(join(tmpdir(), 'flowgate-scale-'));
const file = join(dir, 'hosts.txt');
for (let i = 0; i < names.length; i += 100_000) {
  const chunk = names.slice(i, i + 100_000).map((n) => `0.0.0.0 ${n}\n`).join('');
  writeFileSync(file, i === 0 ? `# generated\n${chunk}` : chunk, { flag: i === 0 ? 'w' : 'a' });
}
const fileBytes = readFileSync(file).length;

gc?.();
gc?.();
const before = process.memoryUsage();
const started = process.hrtime.bigint();
const cpuStarted = process.cpuUsage();
const set = new DomainSet();
const problems = parseDomainList(readFileSync(file, 'utf8'), file, set);
set.seal();
const loadMs = Number(process.hrtime.bigint() - started) / 1e6;
const loadCpu = process.cpuUsage(cpuStarted);
gc?.();
gc?.();
const after = process.memoryUsage();
const heapBytes = after.heapUsed - before.heapUsed;
const bufferBytes = after.arrayBuffers - before.arrayBuffers;

const hits = names.slice(0, 100_000).map((n, i) => `w${i % 7}.x.${n}`);
const misses = names.slice(0, 100_000).map((n, i) => `w${i % 7}.x.${n}q`);
function rate(queries: string[], expectHit: boolean): number {
  let found = 0;
  const rounds = 10;
  const t0 = process.hrtime.bigint();
  for (let r = 0; r < rounds; r++) for (const q of queries) if (set.match(q) !== null) found++;
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const want = expectHit ? queries.length * rounds : 0;
  if (found < want * 0.99 || (!expectHit && found > queries.length * rounds * 0.01)) {
    throw new Error(`unexpected match count ${found}`);
  }
  return (queries.length * rounds) / seconds;
}
const hitRate = rate(hits, true);
const missRate = rate(misses, false);

console.log(JSON.stringify({
  entries: set.size,
  problems: problems.length,
  fileMB: +(fileBytes / 1e6).toFixed(1),
  loadMs: Math.round(loadMs),
  loadCpuMs: Math.round((loadCpu.user + loadCpu.system) / 1000),
  heapMB: +(heapBytes / 1e6).toFixed(1),
  arrayBuffersMB: +(bufferBytes / 1e6).toFixed(1),
  bytesPerEntry: Math.round((heapBytes + bufferBytes) / set.size),
  hitLookupsPerSec: Math.round(hitRate),
  missLookupsPerSec: Math.round(missRate),
  node: process.version,
}));
rmSync(dir, { recursive: true, force: true });
