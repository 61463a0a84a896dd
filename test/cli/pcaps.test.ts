/**
 * Conformance on the shared captures: for every capture, replay reports the same TLS
 * ClientHellos and HTTP requests as tshark (the `.expected.jsonl` files beside each capture):
 * SNI, ALPN, HTTP host, method and path, in order per connection, and JA3 equal to tshark's
 * `tls.handshake.ja3` (recorded once in fixtures/ja3.json). Flows flowgate calls `unknown`
 * are not in the expected files and are left out.
 */
import t from 'tap';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { replayFile, type ReplayDecision } from '../../src/cli/replay.js';
import { defaultConfig } from '../../src/policy/config.js';
import { engineOptionsFromConfig } from '../../src/filter/from-config.js';
import { normalizeAuthority, normalizeName } from '../../src/protocols/names.js';

function repo(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) dir = dirname(dir);
  return dir;
}

const pcaps = join(repo(), '..', 'shared', 'pcaps');
if (!existsSync(pcaps)) throw new Error(`the shared captures are missing: expected them at ${pcaps}`);
const ja3 = JSON.parse(readFileSync(join(repo(), 'test', 'cli', 'fixtures', 'ja3.json'), 'utf8')) as
  Record<string, Record<string, string>>;

interface Expected {
  frame: number; kind: 'tls' | 'http'; ip_src: string; src_port: number; ip_dst: string; dst_port: number;
  sni: string | null; alpn: string[] | null; http_method: string | null; http_host: string | null; http_uri: string | null;
}

const conn = (src: string, sport: number, dst: string, dport: number) => `${src}|${sport}|${dst}|${dport}`;
const name = (raw: string | null | undefined) => {
  if (raw === null || raw === undefined || raw === '') return null;
  const n = normalizeName(raw);
  return n.ok ? n.name : raw;
};
const host = (raw: string | null) => {
  if (raw === null || raw === '') return null;
  const n = normalizeAuthority(raw);
  return n.ok ? n.name : raw;
};

/**
 * Decisions flowgate makes that tshark does not list, and why. The SYN of this capture carries a
 * ClientHello (TCP Fast Open) that the server's SYN-ACK does not acknowledge: the client sends it
 * again after the handshake, and that copy is what the server reads, so flowgate decides it too
 * (EVASION.md 13). tshark reports the first copy only and calls the second a retransmission.
 */
const EXTRA: Record<string, number> = { 'suricata-verify__tcp-fastopen-10-syn-data-ignore__input.pcap': 1 };

const files = readdirSync(pcaps).filter((f) => /\.(pcap|pcapng)$/.test(f) && statSync(join(pcaps, f)).isFile());
t.ok(files.length >= 30, `${files.length} captures`);

for (const file of files) {
  t.test(file, async (t) => {
    const expected = readFileSync(join(pcaps, `${file}.expected.jsonl`), 'utf8').split('\n').filter(Boolean)
      .map((l) => JSON.parse(l) as Expected);
    const got: ReplayDecision[] = [];
    await replayFile(join(pcaps, file), () => ({ verdict: 'allow', reason: 'default' }),
      engineOptionsFromConfig(defaultConfig()), (d) => {
        if (d.app !== 'unknown') got.push(d);
      });
    const byConn = new Map<string, ReplayDecision[]>();
    for (const d of got) {
      const k = conn(d.src, d.sport, d.dst, d.dport);
      byConn.set(k, [...(byConn.get(k) ?? []), d]);
    }
    t.equal(got.length, expected.length + (EXTRA[file] ?? 0), `${expected.length} hellos and requests`);
    const seen = new Map<string, number>();
    for (const e of expected) {
      const k = conn(e.ip_src, e.src_port, e.ip_dst, e.dst_port);
      const i = seen.get(k) ?? 0;
      seen.set(k, i + 1);
      const d = byConn.get(k)?.[i];
      const what = `frame ${e.frame} (${e.kind})`;
      if (d === undefined) {
        t.fail(`${what}: not reported`);
        continue;
      }
      t.equal(d.app, e.kind, `${what}: app`);
      if (e.kind === 'tls') {
        t.equal(d.sni ?? null, name(e.sni), `${what}: SNI`);
        t.same(d.alpn ?? null, e.alpn, `${what}: ALPN`);
        const want = ja3[file]?.[String(d.frame)];
        t.ok(want !== undefined, `${what}: tshark JA3 recorded for frame ${d.frame}`);
        t.equal(d.ja3, want, `${what}: JA3`);
      } else {
        t.equal(d.method, e.http_method, `${what}: method`);
        t.equal(d.target, e.http_uri, `${what}: URI`);
        t.equal(d.host ?? null, host(e.http_host), `${what}: host`);
      }
    }
  });
}
