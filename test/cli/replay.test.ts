/**
 * `flowgate replay` as a user runs it: `node bin/flowgate.js replay ...` (the compiled CLI in
 * dist/, no root) on the shared captures and on files made in a temporary folder. Output
 * formats, errors (truncated, not a capture, missing), a slow policy, a blocking config, pcapng.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { replayFile, type ReplayDecision } from '../../src/cli/replay.js';
import { compilePolicy } from '../../src/policy/policy.js';
import { defaultConfig } from '../../src/policy/config.js';
import { engineOptionsFromConfig } from '../../src/filter/from-config.js';

function repo(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    if (dirname(dir) === dir) throw new Error('replay test: cannot find the repository root (package.json)');
    dir = dirname(dir);
  }
  return dir;
}

const root = repo();
const bin = join(root, 'bin', 'flowgate.js');
if (!existsSync(join(root, 'dist', 'src', 'cli', 'entry.js'))) {
  throw new Error('replay test: the CLI is not built (dist/src/cli/entry.js missing); run `npm run build` first');
}
const pcaps = join(root, '..', 'shared', 'pcaps');
if (!existsSync(pcaps)) throw new Error(`replay test: the shared captures are missing: expected them at ${pcaps}`);
const fixtures = join(root, 'test', 'fixtures', 'pcap');

const tmp = mkdtempSync(join(tmpdir(), 'fg-replay-test-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

const broOrg = join(pcaps, 'zeek__http__bro.org.pcap'); // 31 GETs over 751 frames, keep-alive
const pipelined = join(pcaps, 'zeek__http__pipelined-requests.pcap'); // 5 pipelined GETs
const chrome = join(pcaps, 'zeek__tls__chrome-34-google.pcap'); // one hello, SNI google.de
const hrr = join(pcaps, 'zeek__tls__hrr.pcap'); // two hellos on one connection, the 2nd 12 ms before the end
const wikipedia = join(pcaps, 'zeek__wikipedia.pcap'); // 15 GETs, several hosts

interface Run { code: number | null; stdout: string; stderr: string; lines: string[]; events: ReplayDecision[] }

/** Runs the CLI; `events` are the JSON lines of stdout. */
function flowgate(...args: string[]): Run {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', maxBuffer: 1 << 26 });
  const lines = r.stdout.split('\n').filter((l) => l !== '');
  const events = lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as ReplayDecision);
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, lines, events };
}

/** What identifies a decision, apart from timing. */
function what(d: ReplayDecision): string {
  return [d.flow, d.src, d.sport, d.dst, d.dport, d.app, d.sni, d.method, d.host, d.target, d.verdict, d.reason].join(' ');
}

/** Decisions by connection, each connection's in order (connections interleave differently with a slow policy). */
function perFlow(events: ReplayDecision[]): Array<[string, string[]]> {
  const m = new Map<string, string[]>();
  for (const d of events) m.set(`${d.src} ${d.sport}`, [...(m.get(`${d.src} ${d.sport}`) ?? []), what(d)]);
  return [...m.entries()].sort(([a], [b]) => (a < b ? -1 : 1));
}

/** Frame boundaries of a classic pcap: [start, end) of each record, 1-based frames in order. */
function pcapRecords(buf: Buffer): Array<[number, number]> {
  const le = buf.readUInt32LE(0) === 0xa1b2c3d4 || buf.readUInt32LE(0) === 0xa1b23c4d;
  const out: Array<[number, number]> = [];
  for (let at = 24; at + 16 <= buf.length;) {
    const incl = le ? buf.readUInt32LE(at + 8) : buf.readUInt32BE(at + 8);
    out.push([at, at + 16 + incl]);
    at += 16 + incl;
  }
  return out;
}

/** The same frames as a pcapng file (SHB, one IDB, one EPB per frame), written here so no tool is needed. */
function toPcapng(pcap: Buffer): Buffer {
  const le = pcap.readUInt32LE(0) === 0xa1b2c3d4;
  if (!le) throw new Error('toPcapng: little-endian microsecond pcap only');
  const linktype = pcap.readUInt32LE(20);
  const blocks: Buffer[] = [];
  const block = (type: number, body: Buffer) => {
    const len = 12 + body.length;
    const b = Buffer.alloc(len);
    b.writeUInt32LE(type, 0);
    b.writeUInt32LE(len, 4);
    body.copy(b, 8);
    b.writeUInt32LE(len, len - 4);
    blocks.push(b);
  };
  const shb = Buffer.alloc(16);
  shb.writeUInt32LE(0x1a2b3c4d, 0);
  shb.writeUInt16LE(1, 4);
  shb.writeBigInt64LE(-1n, 8);
  block(0x0a0d0d0a, shb);
  const idb = Buffer.alloc(8);
  idb.writeUInt16LE(linktype, 0);
  idb.writeUInt32LE(262144, 4);
  block(1, idb);
  for (const [start, end] of pcapRecords(pcap)) {
    const us = BigInt(pcap.readUInt32LE(start)) * 1000000n + BigInt(pcap.readUInt32LE(start + 4));
    const data = pcap.subarray(start + 16, end);
    const body = Buffer.alloc(20 + Math.ceil(data.length / 4) * 4);
    body.writeUInt32LE(0, 0);
    body.writeUInt32LE(Number(us >> 32n), 4);
    body.writeUInt32LE(Number(us & 0xffffffffn), 8);
    body.writeUInt32LE(data.length, 12);
    body.writeUInt32LE(pcap.readUInt32LE(start + 12), 16);
    data.copy(body, 20);
    block(6, body);
  }
  return Buffer.concat(blocks);
}

/** The file cut in the middle of a record; answers the path and how many whole frames precede the cut. */
function cutInMiddle(src: string, records: Array<[number, number]>, name: string, fraction = 0.5): { path: string; whole: number } {
  const buf = readFileSync(src);
  const target = Math.floor(buf.length * fraction);
  const i = records.findIndex(([s, e]) => s <= target && target < e);
  const [s, e] = records[i]!;
  const path = join(tmp, name);
  writeFileSync(path, buf.subarray(0, s + Math.floor((e - s) / 2)));
  return { path, whole: i };
}

/** The CLI's decisions on a whole file, computed once. */
const full = new Map<string, Run>();
function whole(file: string): Run {
  if (!full.has(file)) full.set(file, flowgate('replay', file));
  return full.get(file)!;
}

t.test('JSON lines: one decision per line, the same as the library reports', async (t) => {
  const r = flowgate('replay', broOrg, chrome);
  t.equal(r.code, 0, 'exit 0');
  t.equal(r.stderr, '', 'nothing on stderr');
  t.equal(r.events.length, r.lines.length, 'every line is a JSON object');
  t.equal(r.events.length, 32, '31 requests and one ClientHello');
  for (const e of r.events) {
    t.match(e, { type: 'decision', flow: String, src: String, sport: Number, dst: String, dport: Number,
      app: /^(tls|http|unknown)$/, verdict: 'allow', reason: 'default', held_packets: Number, held_ms: Number,
      ts: /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, frame: Number, file: String });
  }
  t.match(r.events[0], { app: 'http', method: 'GET', host: 'bro.org', path: '/', target: '/', file: broOrg, frame: 4 });
  t.match(r.events.at(-1), { app: 'tls', sni: 'google.de', alpn: ['spdy/3', 'spdy/3.1', 'http/1.1'],
    ja3: 'a607f3a5c94c2ee592af1456f36c8367', ja4: /^t12d/, file: chrome, frame: 4 });
  t.equal(r.events[0]!.ts, '2014-01-14T17:04:01.897Z', 'the time of the frame in the capture, not the time now');

  // The CLI prints exactly what replayFile reports with the default config's policy.
  const config = defaultConfig();
  const policy = compilePolicy(config);
  const lib: ReplayDecision[] = [];
  for (const f of [broOrg, chrome]) {
    await replayFile(f, (info) => policy.decide(info), engineOptionsFromConfig(config), (d) => lib.push(d));
  }
  await policy.close();
  t.same(r.events, JSON.parse(JSON.stringify(lib)), 'CLI output == library decisions, field for field');
});

t.test('--format table: a header and one aligned line per decision', async (t) => {
  const r = flowgate('replay', pipelined, chrome, hrr, '--format', 'table');
  t.equal(r.code, 0);
  t.match(r.lines[0], /^\s+FRAME\s+VERDICT\s+APP\s+CLIENT\s+SERVER\s+NAME \/ REQUEST\s+\(REASON\)$/);
  t.equal(r.lines.length, 1 + 5 + 1 + 2, 'header + 5 requests + 1 hello + 2 hellos');
  t.notOk(r.lines.some((l) => l.startsWith('{')), 'no JSON in table mode');
  t.match(r.lines[1], /^\s+4\s+allow\s+http\s+192\.168\.1\.104:1673\s+63\.245\.209\.11:80\s+GET www\.mozilla\.org\/style\/enhanced\.css\s+\(default\)$/);
  t.match(r.lines[6], /^\s+4\s+allow\s+tls\s+192\.168\.4\.149:55881\s+74\.125\.239\.152:443\s+google\.de\s+\(default\)$/);
  t.match(r.lines[7], /^\s+4\s+allow\s+tls\s+.*\s+-\s+\(default\)$/, 'no SNI shows as -');
  t.match(r.lines[8], /^\s+8\s+allow\s+tls\s/, 'the hello after HelloRetryRequest');
  const col = r.lines[0]!.indexOf('VERDICT');
  for (const l of r.lines.slice(1)) t.match(l.slice(col), /^(allow|block) /, 'verdict column aligned');
});

t.test('a truncated pcap: the decisions read so far, then one clear line and exit 1', async (t) => {
  const records = pcapRecords(readFileSync(broOrg));
  const { path, whole: frames } = cutInMiddle(broOrg, records, 'bro-cut.pcap');
  const r = flowgate('replay', path);
  t.equal(r.code, 1, 'exit 1');
  const before = whole(broOrg).events.filter((d) => d.frame <= frames);
  t.ok(before.length > 1 && before.length < 31, `the cut falls between decisions (${before.length} of 31 before frame ${frames})`);
  t.same(r.events.map(what), before.map(what), 'exactly the decisions of the frames before the cut');
  const err = r.stderr.split('\n').filter((l) => l !== '');
  t.equal(err.length, 1, 'one line on stderr');
  t.match(err[0], new RegExp(`^flowgate: ${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: file ends inside a record .*; ${frames} frames read$`));
  t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
});

t.test('a truncated pcapng: the same', async (t) => {
  const ng = join(tmp, 'bro.pcapng');
  writeFileSync(ng, toPcapng(readFileSync(broOrg)));
  const wholeNg = flowgate('replay', ng);
  t.equal(wholeNg.code, 0);
  t.same(wholeNg.events.map(what), whole(broOrg).events.map(what), 'pcapng gives the decisions of the pcap');
  t.same(wholeNg.events.map((d) => [d.frame, d.ts]), whole(broOrg).events.map((d) => [d.frame, d.ts]), 'same frames and times');
  // Blocks: SHB, IDB, then one EPB per frame.
  const buf = readFileSync(ng);
  const blocks: Array<[number, number]> = [];
  for (let at = 0; at < buf.length; at += buf.readUInt32LE(at + 4)) blocks.push([at, at + buf.readUInt32LE(at + 4)]);
  const { path, whole: n } = cutInMiddle(ng, blocks, 'bro-cut.pcapng', 0.7);
  const frames = n - 2;
  const r = flowgate('replay', path);
  t.equal(r.code, 1, 'exit 1');
  t.same(r.events.map(what), whole(broOrg).events.filter((d) => d.frame <= frames).map(what), 'the decisions before the cut');
  t.equal(r.stderr.trim().split('\n').length, 1, 'one line on stderr');
  t.match(r.stderr, new RegExp(`bro-cut\\.pcapng: .*${frames} frames read\\n$`));
});

t.test('not a capture: a clear one-line error, exit 1', async (t) => {
  const cases: Array<[string, string | Buffer, RegExp]> = [
    ['notes.txt', 'this is not a capture file at all\n', /not a pcap or pcapng file/],
    ['empty.pcap', '', /empty file/],
    ['header-cut.pcap', readFileSync(chrome).subarray(0, 10), /ends inside the file header/],
    ['png.pcap', Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex'), /not a pcap or pcapng file/],
  ];
  for (const [name, content, why] of cases) {
    const f = join(tmp, name);
    writeFileSync(f, content);
    const r = flowgate('replay', f);
    t.equal(r.code, 1, `${name}: exit 1`);
    t.equal(r.stdout, '', `${name}: no decisions`);
    t.equal(r.stderr.split('\n').filter(Boolean).length, 1, `${name}: one line`);
    t.match(r.stderr, new RegExp(`^flowgate: .*${name.replace('.', '\\.')}: `), `${name}: names the file`);
    t.match(r.stderr, why, `${name}: says why`);
  }
  const headerOnly = join(tmp, 'header-only.pcap');
  writeFileSync(headerOnly, readFileSync(chrome).subarray(0, 24));
  t.match(flowgate('replay', headerOnly), { code: 0, stdout: '', stderr: '' }, 'a valid capture with no frames: nothing, exit 0');
});

t.test('a missing file: a clear error, and the other files are still replayed', async (t) => {
  const absent = join(tmp, 'absent.pcap');
  const r = flowgate('replay', absent, chrome);
  t.equal(r.code, 1, 'exit 1');
  t.equal(r.stderr, `flowgate: ${absent}: no such file\n`);
  t.match(r.events, [{ sni: 'google.de', file: chrome }], 'the next file was replayed');
  const none = flowgate('replay');
  t.equal(none.code, 2, 'no file at all: usage error');
  t.match(none.stderr, /missing required argument/);
});

t.test('a path that cannot be read names the file and does not stop the others', async (t) => {
  const dir = join(tmp, 'a-directory.pcap');
  mkdirSync(dir);
  const r = flowgate('replay', dir, chrome);
  t.equal(r.code, 1, 'exit 1');
  t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
  t.equal(r.stderr, `flowgate: ${dir}: is a directory\n`, 'one line naming the file');
  t.match(r.events, [{ sni: 'google.de' }], 'the next file was replayed');
});

t.test('--policy-latency 100: the same decisions, each holding packets for 100 ms of capture time', async (t) => {
  // hrr: the second hello is answered 12 ms before the capture ends; pipelined and bro.org: a
  // request is answered during a gap of several seconds between frames.
  for (const f of [chrome, wikipedia, pipelined, broOrg, hrr]) {
    const name = basename(f);
    const fast = whole(f);
    const slow = flowgate('replay', f, '--policy-latency', '100');
    t.equal(slow.code, 0, `${name}: exit 0`);
    t.same(perFlow(slow.events), perFlow(fast.events),
      `${name}: the same ${fast.events.length} decisions per connection (names, verdict, reason)`);
    t.ok(slow.events.every((d) => d.held_packets >= 1), `${name}: every decision held packets`);
    t.ok(slow.events.every((d) => d.held_ms >= 100), `${name}: every decision waited >= 100 ms`);
    const frames = (evs: ReplayDecision[]) => perFlow(evs.map((d) => ({ ...d, flow: String(d.frame) })))
      .flatMap(([, ds]) => ds.map((x) => Number(x.split(' ')[0])));
    const [a, b] = [frames(fast.events), frames(slow.events)];
    t.ok(a.length === b.length && b.every((fr, i) => fr >= a[i]!), `${name}: each decided no earlier than without latency`);
  }
  // A latency beyond decision_timeout_ms (default 2000) is a timeout, and on_timeout (allow) applies.
  const late = flowgate('replay', chrome, '--policy-latency', '5000');
  t.match(late.events, [{ sni: 'google.de', verdict: 'allow', reason: 'timeout' }]);
  t.equal(flowgate('replay', chrome, '--policy-latency', 'soon').code, 2, 'a bad value is a usage error');
});

t.test('--policy-latency with a blocking config: the block is not lost to the decision timeout', async (t) => {
  const cfg = join(tmp, 'block-all-http.yaml');
  writeFileSync(cfg, 'rules:\n  - name: no-mozilla\n    action: block\n    domains: [www.mozilla.org]\n');
  const fast = flowgate('replay', pipelined, '--config', cfg);
  t.match(fast.events, [{ verdict: 'block', reason: 'rule:no-mozilla' }]);
  const slow = flowgate('replay', pipelined, '--config', cfg, '--policy-latency', '100');
  t.match(slow.events, [{ verdict: 'block', reason: 'rule:no-mozilla' }], 'the first request is blocked after 100 ms');
  const openjdk = join(pcaps, 'zeek__tls__openjdk-25.0.2-zeek.org.pcap'); // the hello is 19 ms before the last frame
  writeFileSync(cfg, 'rules:\n  - name: no-zeek\n    action: block\n    domains: [zeek.org]\n');
  const end = flowgate('replay', openjdk, '--config', cfg, '--policy-latency', '100');
  t.match(end.events, [{ sni: 'zeek.org', verdict: 'block', reason: 'rule:no-zeek', held_ms: 100 }],
    'a hello answered after the last frame still gets the policy\'s answer');
});

t.test('--config with blocking rules: block verdicts for the names it lists, allow for the rest', async (t) => {
  const cfg = join(tmp, 'block.yaml');
  writeFileSync(cfg, [
    'rules:',
    '  - name: no-google',
    '    action: block',
    '    domains: [google.de]',
    '  - name: no-wikimedia-uploads',
    '    action: block',
    '    domains: [upload.wikimedia.org]',
    '',
  ].join('\n'));
  const tls = flowgate('replay', chrome, '--config', cfg);
  t.equal(tls.code, 0);
  t.match(tls.events, [{ app: 'tls', sni: 'google.de', verdict: 'block', reason: 'rule:no-google' }]);
  const http = flowgate('replay', wikipedia, '--config', cfg, '--format', 'table');
  t.equal(http.code, 0);
  const blocked = http.lines.filter((l) => /\sblock\s/.test(l));
  t.ok(blocked.length >= 1, `${blocked.length} blocked request(s)`);
  t.ok(blocked.every((l) => /upload\.wikimedia\.org\/.*\(rule:no-wikimedia-uploads\)$/.test(l)), 'only upload.wikimedia.org');
  t.ok(http.lines.some((l) => /\sallow\s+http\s.*www\.wikipedia\.org/.test(l)), 'other hosts allowed');
  const json = flowgate('replay', wikipedia, '--config', cfg);
  const flows = new Set(json.events.filter((d) => d.verdict === 'block').map((d) => d.flow));
  for (const fl of flows) {
    const after = json.events.filter((d) => d.flow === fl);
    t.equal(after.at(-1)!.verdict, 'block', `${fl}: nothing decided on the flow after its block`);
  }
  const bad = join(tmp, 'bad.yaml');
  writeFileSync(bad, 'rules:\n  - name: x\n    action: maybe\n');
  const r = flowgate('replay', chrome, '--config', bad);
  t.equal(r.code, 2, 'a bad config is exit 2');
  t.match(r.stderr, /^flowgate: .*bad\.yaml/);
});

t.test('pcapng input (the fixtures) and nanosecond pcap give the same decision as the pcap', async (t) => {
  const want = whole(join(pcaps, 'zeek__tls__openjdk-25.0.2-zeek.org.pcap')).events;
  t.match(want, [{ app: 'tls', sni: 'zeek.org', frame: 4 }]);
  for (const f of ['tls-openjdk-sll2.pcapng', 'tls-openjdk-sll2.nsec.pcapng', 'tls-openjdk-sll2.nsec.pcap']) {
    const r = flowgate('replay', join(fixtures, f));
    t.equal(r.code, 0, `${f}: exit 0`);
    t.same(r.events.map((d) => ({ ...d, file: '' })), want.map((d) => ({ ...d, file: '' })), `${f}: same decision, frame and time`);
  }
});

t.test('output to a closed pipe ends quietly', async (t) => {
  const r = spawnSync('sh', ['-c', `"${process.execPath}" "${bin}" replay "${broOrg}" "${broOrg}" "${broOrg}" | head -c 1 >/dev/null`],
    { encoding: 'utf8' });
  t.notMatch(r.stderr, /EPIPE|\n\s+at /, 'no EPIPE stack trace', );
});
