/**
 * Issue 3 and 5 micro-benchmarks, in process (no root): time from a decision settling to its held
 * packets' verdicts leaving the engine; reassembly throughput and per-packet cost with 1, 2 and 8
 * segments per ClientHello; memory per flow under inspection with 100k concurrent flows.
 * Run: `node --expose-gc dist/bench/settle.js`. Appends to bench/RESULTS.md.
 */
import { appendFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Engine } from '../src/filter/engine.js';
import { StreamReassembler } from '../src/reassembly/stream.js';
import { Conversation, Feeder, clientHello } from '../test/helpers/tcp.js';
import type { VerdictSink } from '../src/verdict/sink.js';

function repo(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) dir = dirname(dir);
  return dir;
}

const q = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.floor(p * (xs.length - 1))]!;
const nullSink: VerdictSink = { verdict() {}, sendRaw() {} };

/** Settle -> verdict latency: the policy's promise resolves; how long until the held packet's verdict. */
async function settleLatency(): Promise<string> {
  const resolvers: Array<() => void> = [];
  let verdictAt = 0;
  const sink: VerdictSink = { verdict() { if (verdictAt === 0) verdictAt = performance.now(); } };
  const engine = new Engine({ sink, decide: () => new Promise((r) => resolvers.push(() => r('allow'))),
    options: { verifyChecksums: false } });
  const feeder = new Feeder((p) => engine.handle(p));
  const samples: number[] = [];
  for (let i = 0; i < 5000; i++) {
    const c = new Conversation({ sport: 10000 + (i % 50000), client: `10.1.${(i >> 8) & 255}.${i & 255}` });
    feeder.feed(...c.handshake());
    const hsVerdictsDone = resolvers.length;
    feeder.feed(c.send(clientHello({ sni: 'x.test' })));
    if (resolvers.length !== hsVerdictsDone + 1) throw new Error('no decision asked');
    verdictAt = 0;
    const t0 = performance.now();
    resolvers.pop()!();
    await Promise.resolve();
    await Promise.resolve();
    if (verdictAt === 0) await new Promise((r) => setImmediate(r));
    samples.push((verdictAt - t0) * 1000);
  }
  return `| decision settled -> held packets' verdicts sent (5000 flows) | ${q(samples, 0.5).toFixed(1)} µs | ${q(samples, 0.99).toFixed(1)} µs |`;
}

/** In-order reassembly throughput, one core. */
function reassemblyThroughput(): string {
  const seg = new Uint8Array(1448).fill(7);
  const total = 512 * 2 ** 20;
  const r = new StreamReassembler(1, { maxRetainedBytes: 1 << 20, maxOutOfOrderBytes: 1 << 20 });
  let seq = 1;
  const t0 = performance.now();
  for (let sent = 0; sent < total; sent += seg.length) {
    r.insert(seq, seg);
    seq = (seq + seg.length) >>> 0;
    if (r.retainedBytes > 512 * 1024) r.release(r.offset);
  }
  const s = (performance.now() - t0) / 1000;
  return `| in-order reassembly, 1448-byte segments | ${(total / 2 ** 20 / s).toFixed(0)} MB/s | - |`;
}

/** Per-packet engine cost for a ClientHello in 1, 2 and 8 segments (decode, reassembly, parse, decide). */
function perPacket(): string[] {
  const out: string[] = [];
  for (const n of [1, 2, 8]) {
    const engine = new Engine({ sink: nullSink, decide: () => 'allow', options: { verifyChecksums: true } });
    const feeder = new Feeder((p) => engine.handle(p));
    const hello = clientHello({ sni: 'www.example.test', alpn: ['h2', 'http/1.1'], pad: 300 });
    const cuts = Array.from({ length: n - 1 }, (_, i) => Math.floor(((i + 1) * hello.length) / n));
    const flows = Array.from({ length: 4000 }, (_, i) => {
      const c = new Conversation({ sport: 1024 + i, client: `10.2.${(i >> 8) & 255}.${i & 255}` });
      return [...c.handshake(), ...c.split(hello, cuts)];
    });
    const t0 = performance.now();
    let packets = 0;
    for (const pkts of flows) packets += feeder.feed(...pkts).length;
    const us = ((performance.now() - t0) * 1000) / packets;
    out.push(`| whole flow, ClientHello in ${n} segment(s) (${packets / flows.length} packets/flow) | ${us.toFixed(2)} µs/packet | `
      + `${((performance.now() - t0) * 1000 / flows.length).toFixed(1)} µs/flow |`);
  }
  return out;
}

/**
 * Memory per flow under inspection (payload excluded): 100k flows each holding the first 16 bytes
 * of a ClientHello. The packets are built beforehand and kept alive until after the second
 * measurement: if they die in between, the collector frees them and their bytes are subtracted
 * from the flows' (about 950 bytes a flow). Their bytes are moved off the heap first, where a
 * batch from the kernel has them: V8 keeps a small typed array's bytes on the heap and moves them
 * out the first time a view is taken (decoding does), which freed heap during the measurement.
 * Sequence numbers are random, as on the wire: numbers of 2^31 and up are boxed by V8, and a
 * flow's fields hold several.
 */
function memoryPerFlow(): string {
  const gc = (globalThis as { gc?: () => void }).gc;
  const engine = new Engine({ sink: nullSink, decide: () => 'allow', options: { verifyChecksums: false,
    limits: { maxFlows: 200000, maxInspectingFlows: 200000, maxHeldPacketsPerFlow: 64, maxHeldBytesPerFlow: 262144,
      maxOutOfOrderBytesPerFlow: 262144, maxHeldBytesTotal: 2 ** 40, maxHelloBytes: 65536, maxRequestHeadBytes: 32768 } } });
  const feeder = new Feeder((p) => engine.handle(p));
  const partial = clientHello({ sni: 'x.test' }).subarray(0, 16);
  const packets: Uint8Array[][] = [];
  let seed = 1;
  const isn = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0);
  for (let i = 0; i < 100000; i++) {
    const c = new Conversation({ sport: 1024 + (i % 60000), client: `10.${3 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`,
      cisn: isn(), sisn: isn() });
    packets.push([...c.handshake(), c.send(partial)]);
  }
  for (const p of packets) for (const pkt of p) void pkt.buffer; // moves small arrays' bytes off the heap
  gc?.();
  const before = process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
  for (const p of packets) feeder.feed(...p);
  gc?.();
  const after = process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
  if (packets.length !== 100000) throw new Error('the packets must live until after the measurement');
  const perFlow = (after - before) / 100000 - partial.length;
  if (engine.inspectingFlows !== 100000) throw new Error(`expected 100k flows under inspection, got ${engine.inspectingFlows}`);
  return `| memory per flow under inspection, 100k flows (payload excluded${gc ? '' : ', no --expose-gc: rough'}) | ${perFlow.toFixed(0)} bytes | - |`;
}

async function main(): Promise<void> {
  const rows = [await settleLatency(), reassemblyThroughput(), ...perPacket(), memoryPerFlow()];
  const text = [`\n## Engine micro-benchmarks, ${new Date().toISOString()}\n`,
    `Machine: ${os.cpus().length} cores (${os.cpus()[0]?.model ?? '?'}), Node ${process.version}. `
      + 'Command: `node --expose-gc dist/bench/settle.js`. One run, in process (no kernel).\n',
    '| what | median / value | p99 / per flow |', '| --- | --- | --- |', ...rows, ''].join('\n');
  process.stdout.write(text);
  appendFileSync(join(repo(), 'bench', 'RESULTS.md'), text);
}

void main();
