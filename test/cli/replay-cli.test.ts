/** `flowgate replay` from the command line, as a user runs it (the compiled CLI, no root). */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function repo(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) dir = dirname(dir);
  return dir;
}
const root = repo();
const pcaps = join(root, '..', 'shared', 'pcaps');
const tmp = mkdtempSync(join(tmpdir(), 'fg-replay-'));
t.teardown(() => spawnSync('rm', ['-rf', tmp]));

function flowgate(...args: string[]) {
  const r = spawnSync(process.execPath, [join(root, 'bin', 'flowgate.js'), ...args], { encoding: 'utf8' });
  const events = r.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, events };
}

const pipelined = join(pcaps, 'zeek__http__pipelined-requests.pcap');
const chrome = join(pcaps, 'zeek__tls__chrome-34-google.pcap');

t.test('JSON lines with the decision fields, file and frame', async (t) => {
  const r = flowgate('replay', pipelined, chrome);
  t.equal(r.code, 0);
  t.equal(r.events.length, 6);
  t.match(r.events[0], { type: 'decision', app: 'http', method: 'GET', host: 'www.mozilla.org', path: '/style/enhanced.css',
    verdict: 'allow', reason: 'default', file: pipelined, frame: 4 });
  t.match(r.events[5], { app: 'tls', sni: 'google.de', ja4: /^t1/, file: chrome });
  t.match(r.events[0].ts, /^2\d{3}-/, 'capture timestamps');
});

t.test('table format, a config that blocks, a slow policy', async (t) => {
  const table = flowgate('replay', chrome, '--format', 'table');
  t.match(table.stdout, /FRAME\s+VERDICT/);
  t.match(table.stdout, /allow\s+tls .*google\.de/);
  const cfg = join(tmp, 'block.yaml');
  writeFileSync(cfg, 'rules:\n  - name: no-google\n    action: block\n    domains: [google.de]\n');
  const blocked = flowgate('replay', chrome, '--config', cfg);
  t.match(blocked.events, [{ verdict: 'block', reason: 'rule:no-google' }]);
  const slow = flowgate('replay', pipelined, '--policy-latency', '100');
  t.equal(slow.events.length, 5, 'the same decisions');
  t.ok(slow.events.every((e: { held_packets: number }) => e.held_packets >= 1));
  t.ok(slow.events.some((e: { held_ms: number }) => e.held_ms >= 100), 'held for the simulated latency (capture time)');
});

t.test('a truncated capture: decisions read so far, then one clear line and exit 1', async (t) => {
  const whole = readFileSync(pipelined);
  const cut = join(tmp, 'cut.pcap');
  writeFileSync(cut, whole.subarray(0, Math.floor(whole.length * 0.15)));
  const r = flowgate('replay', cut);
  t.equal(r.code, 1);
  t.ok(r.events.length >= 1 && r.events.length < 5, `decisions before the cut (${r.events.length})`);
  t.match(r.stderr, /cut\.pcap: .*frames read/);
  t.equal(r.stderr.trim().split('\n').length, 1, 'one line');
});

t.test('not a capture, a missing file, bad flags', async (t) => {
  const junk = join(tmp, 'junk.pcap');
  writeFileSync(junk, 'this is not a capture file at all');
  const r1 = flowgate('replay', junk);
  t.equal(r1.code, 1);
  t.match(r1.stderr, /junk\.pcap: /);
  const r2 = flowgate('replay', join(tmp, 'absent.pcap'));
  t.equal(r2.code, 1);
  t.match(r2.stderr, /absent\.pcap: no such file/);
  const r3 = flowgate('replay', chrome, '--format', 'xml');
  t.equal(r3.code, 2);
  const r4 = flowgate('replay', chrome, '--policy-latency', 'soon');
  t.equal(r4.code, 2);
  t.notMatch(r4.stderr, /\n\s+at /);
});

t.test('pcapng input', async (t) => {
  const r = flowgate('replay', join(root, 'test', 'fixtures', 'pcap', 'tls-openjdk-sll2.pcapng'));
  t.equal(r.code, 0);
  t.match(r.events, [{ app: 'tls', sni: 'zeek.org' }]);
});
