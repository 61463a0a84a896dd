/**
 * Conformance with tshark on the shared captures (`<repo>/../shared/pcaps`): every capture is
 * replayed in-process through the same pipeline as `flowgate replay`, with a policy that allows
 * everything, and every TLS ClientHello and HTTP request tshark lists in `NAME.expected.jsonl`
 * must come out as a decision with the same SNI, ALPN, HTTP method, host and URI, on the same
 * connection and in the same order within it, at a frame tshark also used for that message.
 * JA3 is compared with tshark's `tls.handshake.ja3`, recorded once in `conformance.ja3.json`
 * (tshark is not run here). Decisions for app `unknown` are not in the expected files and are
 * ignored. Every difference that is not a flowgate bug is listed in DIFFERENCES below and
 * explained in CONFORMANCE.md; the test also fails when a listed difference stops happening.
 */
import t, { type Test } from 'tap';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { replayFile, type ReplayDecision } from '../../src/cli/replay.js';
import { defaultConfig } from '../../src/policy/config.js';
import { engineOptionsFromConfig } from '../../src/filter/from-config.js';

/** The repository root, from the source tree or from dist/. */
function repo(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    if (dirname(dir) === dir) throw new Error('conformance: cannot find the repository root (package.json)');
    dir = dirname(dir);
  }
  return dir;
}

const root = repo();
const pcaps = join(root, '..', 'shared', 'pcaps');
if (!existsSync(join(pcaps, 'README.md'))) {
  throw new Error(`conformance: the shared captures are missing: expected ${pcaps} (the shared folder beside the ` +
    'clone, with its README.md and the *.expected.jsonl files). This test never skips.');
}

/** One line of `NAME.expected.jsonl` (the fields this test uses; see shared/pcaps/README.md). */
interface Expected {
  frame: number;
  first_frame: number;
  reassembled_from_frames: number[] | null;
  kind: 'tls' | 'http';
  ip_src: string;
  src_port: number;
  ip_dst: string;
  dst_port: number;
  stream: number;
  sni: string | null;
  alpn: string[] | null;
  http_method: string | null;
  http_host: string | null;
  http_uri: string | null;
}

/** tshark's JA3 of one ClientHello (conformance.ja3.json). */
interface Ja3Entry { frame: number; ja3: string; ja3_full: string }
const ja3File = JSON.parse(readFileSync(join(root, 'test', 'cli', 'conformance.ja3.json'), 'utf8')) as
  { tshark: string; captures: Record<string, Record<string, Ja3Entry[]>> };

/**
 * Where flowgate and tshark legitimately differ, by capture: decisions flowgate makes that tshark
 * does not list (`extra`) and messages tshark lists that flowgate does not decide (`missing`),
 * by frame number. Each one is explained in CONFORMANCE.md under the heading given.
 */
const DIFFERENCES: Record<string, { extra?: number[]; missing?: number[]; see: string }> = {
  'suricata-verify__tcp-fastopen-10-syn-data-ignore__input.pcap': { extra: [18], see: 'TCP Fast Open' },
};

/** The decision every message gets from the allow-all policy; anything else came from the engine. */
const ALLOW_ALL = { verdict: 'allow', reason: 'conformance' } as const;

// Independent of src/protocols/names.ts on purpose: tshark prints names raw, flowgate reports
// them normalised (lowercase, no trailing dot, no port, IPv6 without brackets).

/** A canonical text form of an IP address, so tshark's and flowgate's spellings compare equal. */
function ip(text: string): string {
  return text.includes(':') ? new URL(`http://[${text}]/`).hostname.slice(1, -1) : text;
}

function conn(src: string, sport: number, dst: string, dport: number): string {
  return `${ip(src)} ${sport} -> ${ip(dst)} ${dport}`;
}

/** SNI as flowgate reports it: lowercase, without a trailing dot. */
function sniOf(raw: string | null): string | null {
  if (raw === null || raw === '') return null;
  return raw.toLowerCase().replace(/\.$/, '');
}

const ABSOLUTE = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)(.*)$/i;

/**
 * The host flowgate should report for a request: the authority of an absolute-form target or
 * a CONNECT, else the Host header; lowercase, no port, no trailing dot, IPv6 without brackets.
 * An absent or empty Host gives null.
 */
function hostOf(e: Expected): string | null {
  const uri = e.http_uri ?? '';
  const abs = ABSOLUTE.exec(uri);
  let raw = abs ? abs[1]! : e.http_method === 'CONNECT' ? uri : e.http_host;
  if (raw === null) return null;
  raw = raw.trim().toLowerCase().replace(/^[^@]*@/, '');
  if (raw.startsWith('[')) raw = raw.slice(1, raw.indexOf(']'));
  else if (/^[^:]*:\d*$/.test(raw)) raw = raw.slice(0, raw.indexOf(':'));
  raw = raw.replace(/\.$/, '');
  return raw === '' ? null : raw;
}

/** The path flowgate should report: the target in origin-form, the part after the authority in absolute-form. */
function pathOf(e: Expected): string {
  const uri = e.http_uri ?? '';
  if (e.http_method === 'CONNECT') return '';
  const abs = ABSOLUTE.exec(uri);
  if (!abs) return uri;
  const rest = abs[2]!;
  return rest === '' ? '/' : rest.startsWith('?') ? `/${rest}` : rest;
}

/** Extension types listed in tshark's ja3_full (second comma-separated field). */
function extensionsOf(ja3Full: string): number[] {
  const field = ja3Full.split(',')[2] ?? '';
  return field === '' ? [] : field.split('-').map(Number);
}

/** Replays one capture in-process with the allow-all policy; returns every decision. */
async function replay(file: string): Promise<ReplayDecision[]> {
  const got: ReplayDecision[] = [];
  await replayFile(join(pcaps, file), () => ALLOW_ALL, engineOptionsFromConfig(defaultConfig()),
    (d) => got.push(d));
  return got;
}

function groupBy<T>(items: T[], key: (x: T) => string): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const x of items) m.set(key(x), [...(m.get(key(x)) ?? []), x]);
  return m;
}

const files = readdirSync(pcaps).filter((f) => /\.(pcap|pcapng|cap)$/.test(f) && statSync(join(pcaps, f)).isFile()).sort();
/** Totals for the summary comment. */
const totals = { captures: 0, tls: 0, http: 0, ja3: 0, extra: 0, missing: 0 };

t.test('the shared captures are all here, each with its expected file', async (t) => {
  t.ok(files.length >= 30, `${files.length} captures in ${pcaps}`);
  for (const f of files) t.ok(existsSync(join(pcaps, `${f}.expected.jsonl`)), `${f}.expected.jsonl exists`);
  for (const f of Object.keys(DIFFERENCES)) t.ok(files.includes(f), `documented difference on a capture that exists: ${f}`);
  t.match(ja3File.tshark, /TShark/, 'the JA3 fixture says which tshark made it');
});

for (const file of files) {
  t.test(file, async (t) => {
    const expPath = join(pcaps, `${file}.expected.jsonl`);
    if (!existsSync(expPath)) {
      t.fail(`${file}: no ${file}.expected.jsonl (run shared/pcaps/make_expected.sh)`);
      return;
    }
    const expected = readFileSync(expPath, 'utf8').split('\n').filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as Expected);
    const decisions = (await replay(file)).filter((d) => d.app !== 'unknown');
    const diff = DIFFERENCES[file] ?? { see: '' };
    const ja3 = ja3File.captures[file];
    const tlsCount = expected.filter((e) => e.kind === 'tls').length;
    if (tlsCount > 0 && ja3 === undefined) {
      t.fail(`${file}: not in conformance.ja3.json; regenerate it (command in CONFORMANCE.md)`);
    } else if (ja3 !== undefined) {
      const recorded = Object.values(ja3).reduce((n, l) => n + l.length, 0);
      t.equal(recorded, tlsCount, 'conformance.ja3.json has one JA3 per ClientHello in the expected file');
    }
    totals.captures++;

    const extraFrames = new Set(diff.extra ?? []);
    const missingFrames = new Set(diff.missing ?? []);
    const extras = decisions.filter((d) => extraFrames.has(d.frame));
    t.same(extras.map((d) => d.frame).sort((a, b) => a - b), [...extraFrames].sort((a, b) => a - b),
      extraFrames.size > 0 ? `the documented extra decisions happen (CONFORMANCE.md, "${diff.see}")` : 'no extra decisions documented');
    totals.extra += extras.length;
    const got = groupBy(decisions.filter((d) => !extraFrames.has(d.frame)), (d) => conn(d.src, d.sport, d.dst, d.dport));
    const want = groupBy(expected.filter((e) => !missingFrames.has(e.frame)), (e) => conn(e.ip_src, e.src_port, e.ip_dst, e.dst_port));
    totals.missing += expected.length - [...want.values()].reduce((n, l) => n + l.length, 0);

    for (const [k, ds] of got) {
      if (!want.has(k)) t.fail(`${k}: flowgate decided ${ds.length} message(s) tshark does not list (frames ${ds.map((d) => d.frame).join(', ')})`);
    }
    /** Index of each ClientHello within its tshark stream, for the JA3 fixture. */
    const hellosInStream = new Map<number, number>();
    for (const [k, es] of want) {
      const ds = got.get(k) ?? [];
      t.equal(ds.length, es.length, `${k}: ${es.length} message(s), in order`);
      es.forEach((e, i) => {
        const what = `${k} #${i + 1}, tshark frame ${e.frame} (${e.kind})`;
        let stream = 0;
        if (e.kind === 'tls') {
          stream = hellosInStream.get(e.stream) ?? 0;
          hellosInStream.set(e.stream, stream + 1);
        }
        const d = ds[i];
        if (d === undefined) {
          t.fail(`${what}: not decided by flowgate`);
          return;
        }
        checkOne(t, what, e, d, ja3?.[String(e.stream)]?.[stream]);
      });
    }
  });
}

/** Compares one expected message with flowgate's decision for it. */
function checkOne(t: Test, what: string, e: Expected, d: ReplayDecision, j: Ja3Entry | undefined): void {
  t.equal(d.app, e.kind, `${what}: app`);
  t.match({ verdict: d.verdict, reason: d.reason }, ALLOW_ALL, `${what}: decided by the policy (the engine flagged nothing)`);
  const frames = e.reassembled_from_frames ?? [e.frame];
  t.ok(frames.includes(d.frame), `${what}: decided at frame ${d.frame}, one of tshark's frames for it [${frames.join(', ')}]`);
  if (e.kind === 'tls') {
    totals.tls++;
    t.equal(d.sni ?? null, sniOf(e.sni), `${what}: SNI`);
    t.same(d.alpn ?? null, e.alpn, `${what}: ALPN`);
    if (j === undefined) {
      t.fail(`${what}: no tshark JA3 in conformance.ja3.json for stream ${e.stream}; regenerate it (CONFORMANCE.md)`);
      return;
    }
    t.equal(j.frame, e.frame, `${what}: JA3 fixture and expected file name the same frame`);
    t.equal(d.ja3, j.ja3, `${what}: JA3 (tshark: ${j.ja3_full})`);
    if (d.ja3 === j.ja3) totals.ja3++;
    // ECH (extension 65037) is reported as a flag beside the outer SNI.
    t.equal(d.ech === true, extensionsOf(j.ja3_full).includes(0xfe0d), `${what}: ECH flag`);
  } else {
    totals.http++;
    t.equal(d.method, e.http_method, `${what}: method`);
    t.equal(d.target, e.http_uri, `${what}: URI (request-target as sent)`);
    t.equal(d.path, pathOf(e), `${what}: path`);
    t.equal(d.host ?? null, hostOf(e), `${what}: host (tshark's raw Host "${e.http_host}", normalised)`);
  }
}

t.test('summary', async (t) => {
  t.comment(`${totals.captures} captures: ${totals.tls} ClientHellos (${totals.ja3} JA3 equal to tshark's), ` +
    `${totals.http} HTTP requests; ${totals.extra} documented extra decision(s), ${totals.missing} documented missing`);
  t.pass('summary printed');
});
