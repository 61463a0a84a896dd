/**
 * Replay throughput against tshark, and parser costs per message.
 *
 * 1. Builds a large capture (default about 300 MB) by repeating the shared TCP captures
 *    (`<repo>/../shared/pcaps`, QUIC-only ones left out): a pcapng file with one interface per
 *    link type, every capture re-timed to start 1 s after the previous one ends, so capture
 *    time only moves forward and flows of one copy are long gone when the next copy reuses
 *    their addresses.
 * 2. Checks on one copy that both tools find the same messages (flowgate's tls/http decisions,
 *    tshark's matching frames), so the timed runs do the same work.
 * 3. Times `node bin/flowgate.js replay FILE > /dev/null` and
 *    `tshark -r FILE -Y 'tls.handshake.type==1 || http.request' > /dev/null`, each run `--runs`
 *    times (median reported), with /usr/bin/time for CPU and peak RSS.
 * 4. Times ClientHello and request-head parsing per message over test/fixtures/tls and
 *    test/fixtures/http (median and p99).
 * 5. When flowgate is below the 5x target (or with --profile), profiles a replay with
 *    `node --cpu-prof` and lists what dominates.
 * Writes bench/replay/RESULTS.md. Needs no root; needs tshark and /usr/bin/time.
 *
 * Run: `npx tsc -p . && node dist/bench/replay/run.js [--mb 300] [--runs 3] [--profile] [--keep]`
 */
import { spawnSync } from 'node:child_process';
import {
  closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, writeSync,
} from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { median } from '../lib/measure.js';
import { readCaptureBatches } from '../../src/capture/pcapfile.js';
import { ipFromFrame } from '../../src/capture/linktype.js';
import { decodeIp } from '../../src/packet/decode.js';
import { ClientHelloReader } from '../../src/protocols/tls/clienthello.js';
import { HttpRequestReader } from '../../src/protocols/http/request.js';

function repo(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    if (dirname(dir) === dir) throw new Error('bench: cannot find the repository root');
    dir = dirname(dir);
  }
  return dir;
}

const root = repo();
const pcaps = join(root, '..', 'shared', 'pcaps');
const bin = join(root, 'bin', 'flowgate.js');
const TSHARK_FILTER = 'tls.handshake.type==1 || http.request';
const TARGET_RATIO = 5;

interface Args { mb: number; runs: number; profile: boolean; keep: boolean; dir: string }

function parseArgs(argv: string[]): Args {
  const a: Args = { mb: 300, runs: 3, profile: false, keep: false, dir: join(os.tmpdir(), 'fg-bench-replay') };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    if (k === '--mb') a.mb = Number(argv[++i]);
    else if (k === '--runs') a.runs = Number(argv[++i]);
    else if (k === '--profile') a.profile = true;
    else if (k === '--keep') a.keep = true;
    else if (k === '--dir') a.dir = argv[++i]!;
    else throw new Error(`bench: unknown argument ${k} (use --mb N --runs N --profile --keep --dir D)`);
  }
  if (!(a.mb > 0) || !(a.runs >= 1)) throw new Error('bench: --mb and --runs must be positive');
  return a;
}

const log = (s: string) => process.stderr.write(`bench: ${s}\n`);

// ---------------------------------------------------------------------------------------------
// 1. The large capture

/** One frame of a classic pcap. */
interface Frame { us: bigint; linktype: number; data: Buffer; origLen: number }

/** Reads a classic pcap (either byte order, micro- or nanosecond); enough for the shared captures. */
function readPcap(path: string): Frame[] {
  const b = readFileSync(path);
  const magicLE = b.readUInt32LE(0);
  const le = magicLE === 0xa1b2c3d4 || magicLE === 0xa1b23c4d;
  const magic = le ? magicLE : b.readUInt32BE(0);
  if (magic !== 0xa1b2c3d4 && magic !== 0xa1b23c4d) throw new Error(`${path}: not a classic pcap`);
  const nano = magic === 0xa1b23c4d;
  const u32 = (at: number) => (le ? b.readUInt32LE(at) : b.readUInt32BE(at));
  const linktype = u32(20) & 0xffff;
  const frames: Frame[] = [];
  for (let at = 24; at + 16 <= b.length;) {
    const incl = u32(at + 8);
    if (at + 16 + incl > b.length) break;
    const frac = BigInt(u32(at + 4));
    frames.push({ us: BigInt(u32(at)) * 1000000n + (nano ? frac / 1000n : frac), linktype,
      data: b.subarray(at + 16, at + 16 + incl), origLen: u32(at + 12) });
    at += 16 + incl;
  }
  return frames;
}

/** Captures used for the big file: every shared .pcap that has TCP items or TCP traffic, not the QUIC-only ones. */
function inputs(): string[] {
  return readdirSync(pcaps).filter((f) => f.endsWith('.pcap') && !/quic/i.test(f)).sort().map((f) => join(pcaps, f));
}

/** Writes `copies` re-timed copies of the inputs as one pcapng file; answers size and frame count. */
function buildCapture(path: string, targetBytes: number): { bytes: number; frames: number; copies: number; inputs: number } {
  const sources = inputs().map(readPcap);
  const oneCopy = sources.reduce((n, fr) => n + fr.reduce((m, f) => m + 32 + Math.ceil(f.data.length / 4) * 4, 0), 0);
  const copies = Math.max(1, Math.round(targetBytes / oneCopy));
  const linktypes = [...new Set(sources.flatMap((fr) => fr.map((f) => f.linktype)))];
  const fd = openSync(path, 'w');
  let frames = 0;
  try {
    const pending: Buffer[] = [];
    let pendingBytes = 0;
    const flush = () => {
      if (pending.length > 0) writeSync(fd, Buffer.concat(pending));
      pending.length = 0;
      pendingBytes = 0;
    };
    const block = (type: number, body: Buffer) => {
      const len = 12 + body.length;
      const b = Buffer.alloc(len);
      b.writeUInt32LE(type, 0);
      b.writeUInt32LE(len, 4);
      body.copy(b, 8);
      b.writeUInt32LE(len, len - 4);
      pending.push(b);
      pendingBytes += len;
      if (pendingBytes > 8 << 20) flush();
    };
    const shb = Buffer.alloc(16);
    shb.writeUInt32LE(0x1a2b3c4d, 0);
    shb.writeUInt16LE(1, 4);
    shb.writeBigInt64LE(-1n, 8);
    block(0x0a0d0d0a, shb);
    for (const lt of linktypes) {
      const idb = Buffer.alloc(8);
      idb.writeUInt16LE(lt, 0);
      idb.writeUInt32LE(262144, 4);
      block(1, idb); // microsecond resolution (no if_tsresol)
    }
    // Capture time starts at the first frame of the first capture and only moves forward.
    let clock = sources[0]![0]!.us;
    for (let c = 0; c < copies; c++) {
      for (const src of sources) {
        if (src.length === 0) continue;
        const shift = clock - src[0]!.us;
        let last = clock;
        for (const f of src) {
          const us = f.us + shift > last ? f.us + shift : last; // a few captures have frames out of time order
          last = us;
          const body = Buffer.alloc(20 + Math.ceil(f.data.length / 4) * 4);
          body.writeUInt32LE(linktypes.indexOf(f.linktype), 0);
          body.writeUInt32LE(Number(us >> 32n), 4);
          body.writeUInt32LE(Number(us & 0xffffffffn), 8);
          body.writeUInt32LE(f.data.length, 12);
          body.writeUInt32LE(f.origLen, 16);
          f.data.copy(body, 20);
          block(6, body);
          frames++;
        }
        clock = last + 1000000n;
      }
    }
    flush();
  } finally {
    closeSync(fd);
  }
  return { bytes: statSync(path).size, frames, copies, inputs: sources.length };
}

// ---------------------------------------------------------------------------------------------
// 2-3. Timed runs

interface Timed { wall: number; user: number; sys: number; rssMb: number }

/** Runs argv with stdout to /dev/null under /usr/bin/time; answers wall, CPU and peak RSS. */
function timed(argv: string[], dir: string): Timed {
  const out = join(dir, 'time.txt');
  const devnull = openSync('/dev/null', 'w');
  try {
    const r = spawnSync('/usr/bin/time', ['-f', '%e %U %S %M', '-o', out, ...argv],
      { stdio: ['ignore', devnull, 'pipe'], maxBuffer: 1 << 26 });
    if (r.status !== 0) throw new Error(`${argv.join(' ')}: exit ${r.status}: ${r.stderr?.toString().trim().slice(-400)}`);
  } finally {
    closeSync(devnull);
  }
  const [wall, user, sys, rss] = readFileSync(out, 'utf8').trim().split('\n').at(-1)!.split(' ').map(Number);
  return { wall: wall!, user: user!, sys: sys!, rssMb: rss! / 1024 };
}

/** Messages found in `file` by each tool (for the one-copy check). */
function countBoth(file: string): { flowgate: number; unknown: number; tshark: number } {
  const fg = spawnSync(process.execPath, [bin, 'replay', file], { encoding: 'utf8', maxBuffer: 1 << 28 });
  if (fg.status !== 0) throw new Error(`flowgate replay: ${fg.stderr}`);
  const events = fg.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { app: string });
  const ts = spawnSync('tshark', ['-r', file, '-Y', TSHARK_FILTER, '-T', 'fields', '-e', 'frame.number',
    '-e', 'tls.handshake.type', '-e', 'http.request'], { encoding: 'utf8', maxBuffer: 1 << 28 });
  if (ts.status !== 0) throw new Error(`tshark: ${ts.stderr}`);
  // One line per frame; a frame can hold more than one hello (type 1 listed twice).
  const tshark = ts.stdout.split('\n').filter(Boolean).reduce((n, l) => {
    const [, types = '', http = ''] = l.split('\t');
    return n + Math.max(types.split(',').filter((x) => x === '1').length + (http !== '' ? 1 : 0), 1);
  }, 0);
  return { flowgate: events.filter((e) => e.app !== 'unknown').length, unknown: events.filter((e) => e.app === 'unknown').length, tshark };
}

/**
 * The floor: reading the file and decoding every IP/TCP header, in this process, no engine.
 * CPU seconds; what is left of a replay's CPU time is the engine, the output and start-up.
 */
async function readFloor(file: string): Promise<number> {
  const c0 = process.cpuUsage();
  let n = 0;
  for await (const batch of readCaptureBatches(file)) {
    for (const rec of batch) {
      const ip = ipFromFrame(rec.linktype, rec.data);
      if (ip !== null && decodeIp(ip).kind === 'tcp') n++;
    }
  }
  const c = process.cpuUsage(c0);
  if (n === 0) throw new Error('bench: no packet decoded');
  return (c.user + c.system) / 1e6;
}

// ---------------------------------------------------------------------------------------------
// 4. Parser costs per message

interface Quant { n: number; median: number; p99: number; max: number }

function quantiles(xs: number[]): Quant {
  const s = [...xs].sort((a, b) => a - b);
  return { n: s.length, median: s[Math.floor(s.length / 2)]!, p99: s[Math.min(s.length - 1, Math.floor(s.length * 0.99))]!, max: s.at(-1)! };
}

/** Times fn(msg) for every message, `rounds` times, after a warm-up; answers microseconds per call. */
function timeEach<T>(msgs: T[], fn: (m: T) => unknown, rounds: number): number[] {
  for (let i = 0; i < 2000; i++) fn(msgs[i % msgs.length]!);
  const us: number[] = [];
  for (let r = 0; r < rounds; r++) {
    for (const m of msgs) {
      const t0 = process.hrtime.bigint();
      fn(m);
      us.push(Number(process.hrtime.bigint() - t0) / 1000);
    }
  }
  return us;
}

interface ParseResult { label: string; messages: number; bytes: string; q: Quant }

function parserCosts(): ParseResult[] {
  // ClientHellos: each .hex is a client stream, one line per TCP segment, ending with the hello(s).
  const tlsDir = join(root, 'test', 'fixtures', 'tls');
  const streams = readdirSync(tlsDir).filter((f) => f.endsWith('.hex')).sort()
    .map((f) => readFileSync(join(tlsDir, f), 'utf8').split('\n').map((l) => l.trim()).filter(Boolean).map((l) => Buffer.from(l, 'hex')));
  const wholeHello = streams.map((segs) => Buffer.concat(segs));
  for (const h of wholeHello) {
    const r = new ClientHelloReader().feed(h);
    if (r.kind !== 'done') throw new Error(`bench: a TLS fixture did not parse (${r.kind})`);
  }
  const helloFed = (b: Buffer) => new ClientHelloReader().feed(b);
  const helloSegs = (segs: Buffer[]) => {
    const rd = new ClientHelloReader();
    let r;
    for (const s of segs) r = rd.feed(s);
    return r;
  };
  // Request heads: each .bin is a client stream; cut out every request head the reader reports.
  const httpDir = join(root, 'test', 'fixtures', 'http');
  const heads: Buffer[] = [];
  for (const f of readdirSync(httpDir).filter((x) => x.endsWith('.bin')).sort()) {
    const stream = readFileSync(join(httpDir, f));
    for (const ev of new HttpRequestReader().feed(stream)) {
      if (ev.kind !== 'request') continue;
      const end = stream.indexOf('\r\n\r\n', ev.headStart);
      if (end > 0) heads.push(stream.subarray(ev.headStart, end + 4));
    }
  }
  const headFed = (b: Buffer) => new HttpRequestReader().feed(b);
  const size = (bs: Buffer[]) => `${Math.min(...bs.map((b) => b.length))}-${Math.max(...bs.map((b) => b.length))}`;
  return [
    { label: 'ClientHello, whole stream in one feed (SNI, ALPN, JA3, JA4)', messages: wholeHello.length, bytes: size(wholeHello),
      q: quantiles(timeEach(wholeHello, helloFed, 2000)) },
    { label: 'ClientHello, fed segment by segment as captured', messages: streams.length, bytes: size(wholeHello),
      q: quantiles(timeEach(streams, helloSegs, 2000)) },
    { label: 'HTTP request head, one feed', messages: heads.length, bytes: size(heads),
      q: quantiles(timeEach(heads, headFed, 500)) },
  ];
}

// ---------------------------------------------------------------------------------------------
// 5. Profile

interface ProfNode { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }

/** Self time by function and by area (src folder, Node internals, GC), from a .cpuprofile. */
function summarise(file: string): { byArea: Array<[string, number]>; top: Array<[string, number]>; idle: number } {
  const p = JSON.parse(readFileSync(file, 'utf8')) as { nodes: ProfNode[]; samples: number[]; timeDeltas: number[] };
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  p.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0)));
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const fn = new Map<string, number>();
  const area = new Map<string, number>();
  let idle = 0;
  for (const [id, us] of self) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    if (functionName === '(idle)') idle += us;
    const where = /\/(src|bench)\/(.+)$/.exec(url);
    const a = where ? `${where[1]}/${where[2]!.split('/').slice(0, -1).join('/') || '.'}/`
      : url.startsWith('node:') ? 'Node internals' : url === '' ? functionName : 'other JS';
    area.set(a, (area.get(a) ?? 0) + us);
    const name = `${functionName || '(anonymous)'} ${where ? `${where[1]}/${where[2]}:${lineNumber + 1}` : url || ''}`.trim();
    fn.set(name, (fn.get(name) ?? 0) + us);
  }
  const pct = (m: Map<string, number>) => [...m.entries()].sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, (100 * v) / total] as [string, number]);
  return { byArea: pct(area).slice(0, 10), top: pct(fn).slice(0, 15), idle: (100 * idle) / total };
}

function profile(file: string, dir: string): ReturnType<typeof summarise> & { file: string } {
  const profDir = join(dir, 'prof');
  rmSync(profDir, { recursive: true, force: true });
  mkdirSync(profDir, { recursive: true });
  const devnull = openSync('/dev/null', 'w');
  try {
    const r = spawnSync(process.execPath, ['--cpu-prof', '--cpu-prof-dir', profDir, bin, 'replay', file],
      { stdio: ['ignore', devnull, 'pipe'] });
    if (r.status !== 0) throw new Error(`profiled replay failed: ${r.stderr}`);
  } finally {
    closeSync(devnull);
  }
  const prof = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
  if (prof === undefined) throw new Error('no .cpuprofile written');
  return { ...summarise(join(profDir, prof)), file: join(profDir, prof) };
}

// ---------------------------------------------------------------------------------------------

function tsharkVersion(): string {
  return (spawnSync('tshark', ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0] ?? '?').replace(/\.$/, '');
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  if (!existsSync(join(root, 'dist', 'src', 'cli', 'entry.js'))) throw new Error('bench: build first (npx tsc -p .)');
  if (!existsSync(pcaps)) throw new Error(`bench: the shared captures are missing: ${pcaps}`);
  mkdirSync(a.dir, { recursive: true });
  const big = join(a.dir, `shared-x-${a.mb}MB.pcapng`);
  const one = join(a.dir, 'shared-x1.pcapng');

  log('building the capture');
  const oneInfo = buildCapture(one, 1);
  const info = buildCapture(big, a.mb * 1e6);
  const mb = info.bytes / 1e6;
  log(`${mb.toFixed(0)} MB, ${info.frames} frames (${info.copies} copies of ${info.inputs} captures)`);

  log('checking both tools find the same messages on one copy');
  const counts = countBoth(one);

  const loadBefore = os.loadavg()[0]!;
  const fgArgv = [process.execPath, bin, 'replay', big];
  const tsArgv = ['tshark', '-r', big, '-Y', TSHARK_FILTER];
  const fg: Timed[] = [];
  const ts: Timed[] = [];
  timed(fgArgv, a.dir); // warm the page cache
  for (let i = 0; i < a.runs; i++) {
    log(`run ${i + 1}/${a.runs}: flowgate`);
    fg.push(timed(fgArgv, a.dir));
    log(`run ${i + 1}/${a.runs}: tshark (${fg.at(-1)!.wall.toFixed(1)} s for flowgate)`);
    ts.push(timed(tsArgv, a.dir));
  }
  const fgWall = median(fg.map((x) => x.wall));
  const tsWall = median(ts.map((x) => x.wall));
  const ratio = tsWall / fgWall;
  const cpuRatio = median(ts.map((x) => x.user + x.sys)) / median(fg.map((x) => x.user + x.sys));
  const loadAfter = os.loadavg()[0]!;

  log('read + decode floor');
  const floor = Math.min(await readFloor(big), await readFloor(big), await readFloor(big)); // least disturbed of 3
  log('parser costs');
  const parse = parserCosts();

  let prof: (ReturnType<typeof profile>) | undefined;
  if (a.profile || ratio < TARGET_RATIO) {
    log('profiling flowgate replay');
    prof = profile(big, a.dir);
  }

  const cpu = os.cpus();
  const f1 = (x: number) => x.toFixed(1);
  const row = (name: string, runs: Timed[], wall: number) =>
    `| ${name} | ${runs.map((x) => f1(x.wall)).join(', ')} | **${f1(wall)}** | ${f1(mb / wall)} | ` +
    `${f1(info.frames / wall / 1000)} | ${f1(median(runs.map((x) => x.user + x.sys)))} | ${median(runs.map((x) => x.rssMb)).toFixed(0)} |`;
  const lines = [
    '# Replay benchmark: flowgate replay vs tshark',
    '',
    `Date: ${new Date().toISOString()}. Machine: ${cpu.length} x ${cpu[0]?.model ?? '?'}, ` +
      `${(os.totalmem() / 2 ** 30).toFixed(0)} GiB RAM, Linux ${os.release()}. Node ${process.version}; ${tsharkVersion()}.`,
    '',
    `Command: \`npx tsc -p . && node dist/bench/replay/run.js --mb ${a.mb} --runs ${a.runs}${a.profile ? ' --profile' : ''}\``,
    '(`bench/replay/README.md` says what it does).',
    '',
    `Capture: ${mb.toFixed(0)} MB pcapng, ${info.frames.toLocaleString('en')} frames: ${info.copies} copies of the ` +
      `${info.inputs} TCP captures of \`../shared/pcaps\` (QUIC-only ones left out), re-timed so capture time only moves forward.`,
    '',
    `Same work: on one copy (${(oneInfo.bytes / 1e6).toFixed(2)} MB) flowgate decides ${counts.flowgate} TLS/HTTP messages ` +
      `(plus ${counts.unknown} \`unknown\` flows) and tshark's filter matches ${counts.tshark}` +
      (counts.flowgate - counts.tshark === 1
        ? '; the one more is the TCP Fast Open hello flowgate decides twice (test/cli/CONFORMANCE.md).'
        : counts.flowgate === counts.tshark ? '.' : ' (see test/cli/CONFORMANCE.md for why they may differ).'),
    '',
    '| tool, output to /dev/null | wall s per run | median s | MB/s | k frames/s | CPU s (user+sys) | peak RSS MB |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    row('`flowgate replay FILE`', fg, fgWall),
    row(`\`tshark -r FILE -Y '${TSHARK_FILTER.replace(/\|/g, '\\|')}'\``, ts, tsWall),
    '',
    `**flowgate / tshark: ${ratio.toFixed(1)}x** by wall time (target >= ${TARGET_RATIO}x): ${ratio >= TARGET_RATIO ? 'met' : 'MISSED'}. ` +
      `By CPU time: ${cpuRatio.toFixed(1)}x.`,
    '',
    `Load average (1 min) ${loadBefore.toFixed(1)} before the timed runs and ${loadAfter.toFixed(1)} after, on ${cpu.length} CPUs: ` +
      (Math.max(loadBefore, loadAfter) > cpu.length / 2
        ? 'the machine was busy with other work, so wall times are noisy; CPU time is the steadier comparison.'
        : 'the machine was otherwise quiet.'),
    '',
    `Floor: reading the file and decoding every IP/TCP header without the engine takes ${floor.toFixed(2)} CPU s (best of 3, ` +
      `${f1(mb / floor)} MB/s), ${((100 * floor) / median(fg.map((x) => x.user + x.sys))).toFixed(0)}% of a replay's CPU time.`,
    '',
    '## Parsing one message',
    '',
    'Each message fed to a fresh reader (what a new flow costs), timed one call at a time with',
    '`process.hrtime` after a warm-up of 2000 calls; microseconds per message.',
    '',
    '| what | messages (fixtures) | bytes | samples | median µs | p99 µs | max µs |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...parse.map((p) => `| ${p.label} | ${p.messages} | ${p.bytes} | ${p.q.n} | ${p.q.median.toFixed(2)} | ${p.q.p99.toFixed(2)} | ${p.q.max.toFixed(0)} |`),
    '',
  ];
  if (prof !== undefined) {
    lines.push('## Where flowgate replay spends its time', '',
      `\`node --cpu-prof bin/flowgate.js replay FILE > /dev/null\`, self time (${prof.idle.toFixed(1)}% idle).`, '',
      '| area | self % |', '| --- | --- |', ...prof.byArea.map(([k, v]) => `| ${k} | ${v.toFixed(1)} |`), '',
      '| function | self % |', '| --- | --- |', ...prof.top.map(([k, v]) => `| \`${k}\` | ${v.toFixed(1)} |`), '');
  }
  // A hand-written "## Findings" section (analysis of a run) is kept from the previous file.
  const resultsPath = join(root, 'bench', 'replay', 'RESULTS.md');
  const previous = existsSync(resultsPath) ? readFileSync(resultsPath, 'utf8') : '';
  const findings = previous.indexOf('\n## Findings');
  if (findings >= 0) lines.push(previous.slice(findings + 1).trimEnd(), '');
  const text = lines.join('\n');
  writeFileSync(resultsPath, text);
  process.stdout.write(text);
  if (!a.keep) {
    rmSync(big, { force: true });
    rmSync(one, { force: true });
  } else log(`kept ${big}`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
