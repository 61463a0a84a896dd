/**
 * Issue 6 end to end: metrics, the control socket, the systemd notify protocol and unit file,
 * several queues on worker threads, and faults (kill -9 with flows paused, a dead decision
 * source, a full kernel queue, a broken event stream).
 */
import t, { type Test } from 'tap';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  checkPrerequisites, createTopology, curl, iptables, iptablesCounters, rawSegments, readQueueStats, repoRoot, startServers, waitUntil,
  type Family, type Topology,
} from './harness/index.js';
import { applyRules, cliArgv, startFlowgate } from './flowgate.js';
import { clientHello } from '../helpers/tcp.js';

checkPrerequisites(['ip', 'iptables', 'curl', 'python3']);

async function fixture(t: Test): Promise<Topology> {
  const topo = await createTopology();
  t.teardown(() => topo.destroy());
  await startServers(topo);
  return topo;
}

/**
 * A server on `port` (IPv4 and IPv6) that answers nothing and reports each connection once it has
 * seen a hello naming blocked.test, or after `timeoutS` quiet seconds: `received N blocked|clean`.
 * Resolves with the reports so far.
 */
async function reportingServer(topo: Topology, port: number, timeoutS: number): Promise<() => string[]> {
  const server = topo.spawn('server', ['python3', '-c', `
import socket, threading
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(('::', ${port}))
s.listen()
print('listening', flush=True)
def serve(c):
    got = b''
    c.settimeout(${timeoutS})
    try:
        while b'blocked.test' not in got:
            x = c.recv(4096)
            if not x: break
            got += x
    except Exception: pass
    print('received', len(got), 'blocked' if b'blocked.test' in got else 'clean', flush=True)
while True:
    threading.Thread(target=serve, args=(s.accept()[0],)).start()
`]);
  await server.waitForLine(/listening/, { timeoutMs: 5000 });
  return () => server.stdout.split('\n').filter((l) => l.startsWith('received'));
}

/** The gateway's MAC address on the client's side, where forge.py sends its frames. */
async function gatewayMac(topo: Topology): Promise<string> {
  return JSON.parse((await topo.exec('gw', ['ip', '-j', 'link', 'show', topo.ifaces.gwClient], { check: true })).stdout)[0].address;
}

/** A ClientHello naming `name`, in hex for forge.py (its session id holds no 0x16: a hello the binding lets on gets the answer mark). */
const helloHex = (name: string) => Buffer.from(clientHello({ sni: name })).toString('hex');

t.test('metrics on 127.0.0.1 and a control socket of mode 0600', async (t) => {
  const topo = await fixture(t);
  await applyRules(topo);
  const fg = await startFlowgate(topo, 'metrics: "127.0.0.1:9475"\nrules:\n  - name: b\n    action: block\n    domains: [blocked.test]\n');
  await curl(topo, { url: 'https://allowed.test/' });
  await curl(topo, { url: 'https://blocked.test/' });
  const m = await topo.exec('gw', ['curl', '-s', 'http://127.0.0.1:9475/metrics'], { check: true });
  t.match(m.stdout, /flowgate_packets_received_total \d+/);
  t.match(m.stdout, /flowgate_decisions_total\{verdict="block",reason="rule"\} 1/);
  t.match(m.stdout, /flowgate_decisions_total\{verdict="allow",reason="default"\} 1/);
  t.match(m.stdout, /flowgate_held_packets 0/);
  t.match(m.stdout, /flowgate_decision_latency_ms_bucket\{le="\+Inf"\} 2/);
  t.match(m.stdout, /flowgate_kernel_queue_dropped_total\{why="queue_full"\} 0/);
  t.equal(statSync(fg.socket).mode & 0o777, 0o600, 'control socket is 0600');
  await fg.stop();
});

t.test('run warns, at start and on a reload that finds it, when conntrack lets out-of-window packets through', async (t) => {
  const topo = await fixture(t);
  await applyRules(topo);
  const liberal = (v: 0 | 1) => topo.exec('gw', ['sysctl', '-qw', `net.netfilter.nf_conntrack_tcp_be_liberal=${v}`], { check: true });
  const warnings = (p: { stderr: string }) => p.stderr.split('\n').filter((l) => l.includes('nf_conntrack_tcp_be_liberal is 1')).length;
  const fg = await startFlowgate(topo, 'default: allow');
  // The kernel is checked just after the queue is bound: the namespace's tcp_loose (1) says when.
  await fg.process.waitForLine(/nf_conntrack_tcp_loose is 1/, { timeoutMs: 5000, stream: 'stderr' });
  t.equal(warnings(fg.process), 0, 'the default (0): no warning');
  await liberal(1);
  const reloads = () => fg.process.stderr.split('\n').filter((l) => l.includes('reloaded config')).length;
  for (let i = 1; i <= 2; i++) {
    fg.process.signalGroup('SIGHUP');
    await waitUntil(() => reloads() === i, { timeoutMs: 5000, what: `reload ${i}` });
  }
  t.equal(warnings(fg.process), 1, 'found on reload, said once');
  // Set right, then wrong again: said again.
  await liberal(0);
  fg.process.signalGroup('SIGHUP');
  await waitUntil(() => reloads() === 3, { timeoutMs: 5000, what: 'reload 3' });
  await liberal(1);
  fg.process.signalGroup('SIGHUP');
  await waitUntil(() => reloads() === 4, { timeoutMs: 5000, what: 'reload 4' });
  t.equal(warnings(fg.process), 2, 'set right and wrong again: said again');
  t.equal(await fg.stop(), 0);
  const again = await startFlowgate(topo, 'default: allow', 'again');
  await again.process.waitForLine(/"level":"warn","msg":"nf_conntrack_tcp_be_liberal is 1 in this network namespace/,
    { timeoutMs: 5000, stream: 'stderr' });
  t.pass('said at start, as a warning');
  t.equal((await curl(topo, { url: 'https://allowed.test/' })).httpCode, 200, 'and filtering goes on');
  t.equal(await again.stop(), 0);
  await liberal(0);
});

/** Packets a client with its own stack could send, from the client namespace (see the file). */
const FORGE = join(repoRoot(), 'test', 'e2e', 'fixtures', 'forge.py');

t.test('rules apply --rpfilter: a client cannot make conntrack take its own packet for its server\'s', async (t) => {
  const topo = await fixture(t);
  const port = 8444;
  await reportingServer(topo, port, 30); // takes connections and never answers
  const gwMac = await gatewayMac(topo);
  const invalid = async (family: Family) => (await iptablesCounters(topo, 'filter', 'FLOWGATE', { family })).rules
    .find((r) => /INVALID/.test(r.spec))!.packets;
  const attack = async (family: Family) => {
    const a = family === 4 ? topo.ip4 : topo.ip6;
    const before = await invalid(family);
    await topo.exec('client', ['python3', FORGE, 'spoof-ack', String(family), topo.ifaces.client, gwMac, a.client, a.server, String(port)], { check: true });
    return (await invalid(family)) - before;
  };
  await applyRules(topo);
  for (const family of [4, 6] as const) {
    t.equal(await attack(family), 0, `IPv${family}, without --rpfilter: the spoofed packet counts as the server's, so the ACK of data never sent passes conntrack`);
  }
  await applyRules(topo, ['--rpfilter']);
  for (const family of [4, 6] as const) {
    const rpf = async () => (await iptablesCounters(topo, 'raw', 'FLOWGATE_RPF', { family })).rules[0]!.packets;
    const dropped = await rpf();
    t.equal(await attack(family), 1, `IPv${family}, with --rpfilter: the same ACK is INVALID and dropped`);
    t.equal((await rpf()) - dropped, 1, `IPv${family}: the spoofed packet was dropped in raw PREROUTING`);
  }
  // Real traffic through the filter is untouched by the check.
  const fg = await startFlowgate(topo, 'rules:\n  - name: b\n    action: block\n    domains: [blocked.test]\n');
  for (const family of [4, 6] as const) {
    t.equal((await curl(topo, { url: 'https://allowed.test/', ipv6: family === 6 })).httpCode, 200, `IPv${family}: allowed.test answers`);
    t.equal((await curl(topo, { url: 'https://blocked.test/', ipv6: family === 6 })).errorKind, 'reset', `IPv${family}: blocked.test is reset`);
  }
  await fg.stop();
});

t.test('nf_conntrack_tcp_loose=0: a client cannot make conntrack forget its connection and then acknowledge anything', async (t) => {
  const topo = await fixture(t);
  const port = 8445;
  // The server drops the client's fakes (IP ID 0x7777).
  await topo.exec('server', ['iptables', '-w', '-A', 'INPUT', '-p', 'tcp', '-m', 'u32', '--u32', '2&0xffff=0x7777', '-j', 'DROP'], { check: true });
  const reports = await reportingServer(topo, port, 6);
  const gwMac = await gatewayMac(topo);
  await topo.exec('gw', ['sysctl', '-qw', 'net.netfilter.nf_conntrack_tcp_timeout_close=1'], { check: true });
  await applyRules(topo);
  const fg = await startFlowgate(topo, 'rules:\n  - name: b\n    action: block\n    domains: [blocked.test]\n');
  const attack = async (loose: 0 | 1, n: number) => {
    await topo.exec('gw', ['sysctl', '-qw', `net.netfilter.nf_conntrack_tcp_loose=${loose}`], { check: true });
    await topo.exec('client', ['python3', FORGE, 'forgotten', topo.ifaces.client, gwMac, topo.ip4.client, topo.ip4.server,
      String(port), helloHex('allowed.test'), helloHex('blocked.test'), '2'], { check: true });
    await waitUntil(() => reports().length >= n || undefined, { timeoutMs: 40000, what: 'the server to report' });
    return reports()[n - 1]!;
  };
  t.match(await attack(1, 1), /blocked$/, 'with tcp_loose=1 (the default) the blocked name gets through: the hole flowgate warns about');
  t.match(await attack(0, 2), /clean$/, 'with tcp_loose=0 it does not: the record acknowledging unsent data is INVALID');
  await fg.process.waitForLine(/nf_conntrack_tcp_loose is 1/, { timeoutMs: 5000, stream: 'stderr' });
  t.pass('and flowgate said so at start');
  await fg.stop();
  await topo.exec('gw', ['sysctl', '-qw', 'net.netfilter.nf_conntrack_tcp_loose=1'], { check: true });
});

t.test('the answer chain without --rpfilter: a client\'s fake ServerHello in its server\'s name ends nothing', async (t) => {
  const topo = await fixture(t);
  const port = 8446;
  // A server that never answers.
  const reports = await reportingServer(topo, port, 4);
  const gwMac = await gatewayMac(topo);
  // clientHello's session id holds no 0x16: a hello the binding lets on gets the answer mark.
  await applyRules(topo);
  const fg = await startFlowgate(topo, 'rules:\n  - name: b\n    action: block\n    domains: [blocked.test]\n');
  // The answer chain's rule that reads a ServerHello (the others pass bare ACKs or act on its result).
  const serverHellos = async (family: Family) => (await iptablesCounters(topo, 'filter', 'FLOWGATE_ANS', { family })).rules
    .find((r) => r.target === 'CONNMARK' && r.spec.includes('-m u32'))!.packets;
  // The rule that accepts the server's packets of inspected flows unread.
  const unread = async (family: Family) => (await iptablesCounters(topo, 'filter', 'FLOWGATE', { family })).rules
    .find((r) => r.target === 'ACCEPT' && r.spec.includes('--ctdir REPLY'))!.packets;
  // The fake: a first hello to allowed.test, a ServerHello in the server's name sent by the client, a second hello to blocked.test.
  const fake = async (family: Family) => {
    const a = family === 4 ? topo.ip4 : topo.ip6;
    const seen = reports().length;
    const [before, read, passed] = [(await fg.status()).kernel, await serverHellos(family), await unread(family)];
    const res = await topo.exec('client', ['python3', FORGE, 'fake-answer', String(family), topo.ifaces.client, gwMac, a.client, a.server,
      String(port), helloHex('allowed.test'), helloHex('blocked.test')], { check: true });
    await waitUntil(() => reports().length > seen || undefined, { timeoutMs: 10000, what: 'the server to report' });
    const k = (await fg.status()).kernel;
    return {
      marked: k.helloAnswerMarks! - before.helloAnswerMarks!, read: (await serverHellos(family)) - read, answered: k.answered! - before.answered!,
      unread: (await unread(family)) - passed, client: res.stdout.trim(), server: reports().at(-1),
    };
  };
  // The gateway's own reverse-path filter (rp_filter, inherited from the host for IPv4) would drop the fake at routing, after the rules; off, so the rules alone decide.
  await topo.exec('gw', ['sh', '-c', 'for f in /proc/sys/net/ipv4/conf/*/rp_filter; do echo 0 > $f; done'], { check: true });
  for (const family of [4, 6] as const) {
    const a = family === 4 ? topo.ip4 : topo.ip6;
    // A first connection to allowed.test on this port, decided by the engine, teaches the binding the name.
    const seen = reports().length;
    const teach = await rawSegments(topo, { port, ipv6: family === 6, chunks: [clientHello({ sni: 'allowed.test' })], waitMs: 300 });
    t.equal(teach.closedBy === 'reset', false, `IPv${family}: the first hello to allowed.test passes`);
    await waitUntil(() => reports().length > seen || undefined, { timeoutMs: 10000, what: 'the server to report' });
    const r = await fake(family);
    t.equal(r.marked, 1, `IPv${family}: the binding let the first hello on with the answer mark`);
    t.equal(r.read, 0, `IPv${family}: the fake, which came in on the client's side, never entered the answer chain`);
    t.ok(r.unread >= 1, `IPv${family}: it was accepted unread, as a server packet of an inspected flow`);
    t.equal(r.answered, 0, `IPv${family}: the fake ended no inspection`);
    const d = await fg.waitForDecision((x) => x.sni === 'blocked.test' && x.dst === a.server);
    t.equal(d.verdict, 'block', `IPv${family}: the second hello reached the engine and was blocked`);
    t.equal(r.client, 'reset', `IPv${family}: the client was reset`);
    t.match(r.server, /clean$/, `IPv${family}: the server never received the blocked name`);
  }
  // The control: a guard that vouches without the reverse-path check lets the same fake through.
  await iptables(topo, ['-t', 'mangle', '-R', 'FLOWGATE_ANSRPF', '3', '-m', 'conntrack', '--ctdir', 'REPLY',
    '-j', 'MARK', '--set-xmark', '0x400/0x400'], { family: 4 });
  const blocks = async () => (await fg.settledDecisions()).filter((d) => d.sni === 'blocked.test').length;
  const blocked = await blocks();
  const control = await fake(4);
  t.match(control, { marked: 1, read: 1, answered: 1, client: 'open' }, 'control, no reverse-path check: the fake ended the inspection');
  // (The server itself drops that hello: the client's kernel acknowledged the fake's bytes, which the server never sent.)
  t.equal(await blocks(), blocked, 'control: the second hello passed the gateway unread');
  await applyRules(topo);
  // Real servers' answers are vouched for: HTTPS connections end in the answer chain.
  const https = async (what: string) => {
    const before = (await fg.status()).kernel;
    const read = (await serverHellos(4)) + (await serverHellos(6));
    for (const ipv6 of [false, true, false, true, false, true]) {
      t.equal((await curl(topo, { url: 'https://allowed.test/', ipv6 })).httpCode, 200, `HTTPS over IPv${ipv6 ? 6 : 4} ${what}`);
    }
    const k = (await fg.status()).kernel;
    return { marked: k.helloAnswerMarks! - before.helloAnswerMarks!, answered: k.answered! - before.answered!,
      read: (await serverHellos(4)) + (await serverHellos(6)) - read };
  };
  const guarded = await https('with the guard');
  t.ok(guarded.answered >= 1 && guarded.answered === guarded.marked && guarded.read === guarded.answered,
    `with the guard every hello let on with the answer mark ended on the server's answer in the rules (${guarded.answered} of 6)`);
  // Without the guard (a tool flushed the mangle table, say) nothing is vouched for: the answer
  // chain is never entered and TLS connections go on as without it.
  for (const family of [4, 6] as const) await iptables(topo, ['-t', 'mangle', '-F', 'FLOWGATE_ANSRPF'], { family });
  const bare = await https('without the guard');
  t.ok(bare.marked >= 1, `the binding still let hellos on with the answer mark (${bare.marked})`);
  t.match(bare, { answered: 0, read: 0 }, 'none ended in the answer chain, which read no ServerHello');
  await fg.stop();
});

t.test('two queues on two worker threads: flows balanced, counters merged', async (t) => {
  const topo = await fixture(t);
  await applyRules(topo, ['--queues', '0:1']);
  const socket = join(topo.tmpDir, 'w.sock');
  const config = join(topo.tmpDir, 'w.yaml');
  writeFileSync(config, `control: ${socket}\nrules:\n  - name: b\n    action: block\n    domains: [blocked.test]\n`);
  const proc = topo.spawn('gw', cliArgv('run', '--config', config, '--queues', '0:1'));
  await proc.waitForLine(/bound queues/, { stream: 'stderr', timeoutMs: 15000 });
  // The kernel balances by address pair (both directions of a flow land on one queue), so the
  // client speaks from several addresses.
  const base = topo.ip4.client.replace(/\.\d+$/, '');
  const sources = [10, 11, 12, 13, 14, 15, 16, 17].map((i) => `${base}.${i}`);
  for (const a of sources) await topo.exec('client', ['ip', 'addr', 'add', `${a}/24`, 'dev', topo.ifaces.client], { check: true });
  const results = await Promise.all(sources.flatMap((a) => [1, 2].map(() =>
    curl(topo, { url: 'https://allowed.test/', extraArgs: ['--interface', a] }))));
  t.equal(results.filter((r) => r.httpCode === 200).length, 16);
  t.equal((await curl(topo, { url: 'https://blocked.test/' })).errorKind, 'reset');
  const status = JSON.parse((await topo.exec('gw', cliArgv('status', '--socket', socket), { check: true })).stdout);
  t.equal(status.workers.length, 2, 'two workers');
  t.equal(status.received, status.verdicts, 'merged: received == verdicts');
  t.equal(status.held, 0);
  t.ok(status.workers.every((w: { received: number }) => w.received > 0), 'both queues saw flows');
  const q = await readQueueStats(topo);
  t.equal(q.length, 2, 'both queues bound');
  t.equal((await proc.kill('SIGTERM', 10000)).code, 0);
});

t.test('handshakes through NFLOG: a group held elsewhere is one clear error; handshake_log: false queues them', async (t) => {
  const topo = await fixture(t);
  await applyRules(topo);
  // Another program holds NFLOG group 0 (here: the binding itself, for an unrelated queue).
  const queueJs = join(repoRoot(), 'dist', 'src', 'capture', 'queue.js');
  const holder = topo.spawn('gw', [process.execPath, '--input-type=module', '-e',
    `const { NfQueue } = await import(${JSON.stringify(queueJs)}); NfQueue.open({ queue: 900, logGroup: 0 }, () => {}); console.error('holding');`]);
  await holder.waitForLine(/holding/, { stream: 'stderr', timeoutMs: 10000 });
  const config = join(topo.tmpDir, 'hs.yaml');
  writeFileSync(config, `control: ${join(topo.tmpDir, 'hs.sock')}\n`);
  const busy = topo.spawn('gw', cliArgv('run', '--config', config));
  const exit = await busy.exited;
  t.equal(exit.code, 1, 'exit 1');
  t.match(busy.stderr, /NFLOG group 0 is already bound by another process or socket; free it, or set handshake_log: false/);
  t.notMatch(busy.stderr, /\n\s+at /, 'no stack trace');
  await holder.kill('SIGTERM', 5000);

  // handshake_log: false with rules that queue handshakes: they go through the queue as before.
  await applyRules(topo, ['--no-handshake-log']);
  const fg = await startFlowgate(topo, 'handshake_log: false\n', 'hs-off');
  t.equal((await curl(topo, { url: 'https://allowed.test/' })).httpCode, 200);
  const k = (await fg.status()).kernel;
  t.equal(k.logged, 0, 'nothing read from NFLOG');
  t.ok(k.handshakeAccepts! >= 2, `the SYN and SYN-ACK were queued and accepted by the binding (${k.handshakeAccepts})`);
  t.equal(await fg.stop(), 0);
});

t.test('systemd: READY=1 on a fake NOTIFY_SOCKET once bound; the unit file verifies', async (t) => {
  const topo = await fixture(t);
  await applyRules(topo);
  const dir = mkdtempSync(join(tmpdir(), 'fg-notify-'));
  t.teardown(() => spawn('rm', ['-rf', dir]));
  const sock = join(dir, 'notify.sock');
  // Node has no Unix datagram sockets: a tiny python3 receiver stands in for systemd.
  const receiver = topo.spawn('gw', ['python3', '-c', `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(${JSON.stringify(sock)})
print('listening', flush=True)
while True:
    print(s.recv(4096).decode().replace('\\n', ' '), flush=True)
`]);
  await receiver.waitForLine(/listening/);
  const config = join(topo.tmpDir, 'n.yaml');
  writeFileSync(config, `control: ${join(topo.tmpDir, 'n.sock')}\n`);
  const proc = topo.spawn('gw', ['env', `NOTIFY_SOCKET=${sock}`, 'WATCHDOG_USEC=400000', ...cliArgv('run', '--config', config)]);
  await receiver.waitForLine(/READY=1/, { timeoutMs: 15000 });
  t.ok((await readQueueStats(topo)).length === 1, 'the queue is bound when READY=1 arrives');
  await receiver.waitForLine(/WATCHDOG=1/, { timeoutMs: 3000 });
  t.pass('watchdog pings');
  await proc.kill('SIGTERM', 10000);
  await receiver.waitForLine(/STOPPING=1/, { timeoutMs: 3000 });
  t.pass('STOPPING=1 on SIGTERM');

  // systemd-analyze verify needs the commands to exist: point them at this checkout.
  const unit = readFileSync(join(repoRoot(), 'systemd', 'flowgate.service'), 'utf8')
    .replaceAll('/usr/local/bin/flowgate', join(repoRoot(), 'bin', 'flowgate.js'));
  writeFileSync(join(dir, 'flowgate.service'), unit);
  const verify = await topo.exec('gw', ['systemd-analyze', 'verify', join(dir, 'flowgate.service')]);
  t.equal(verify.stderr.trim(), '', `systemd-analyze verify is clean ${verify.stderr}`);
  t.equal(verify.code, 0);
});

t.test('kill -9 with flows paused: bypass keeps traffic flowing; after restart retransmitted data is decided', async (t) => {
  const topo = await fixture(t);
  await applyRules(topo);
  const mod = join(topo.tmpDir, 'never.mjs');
  writeFileSync(mod, 'export function decide() { return new Promise(() => {}); }\n');
  const fg = await startFlowgate(topo, `decide:\n  module: ${mod}\ndecision_timeout_ms: 30000\n`);
  const pending = curl(topo, { url: 'http://allowed.test/', maxTimeMs: 15000 });
  await waitUntil(async () => (await fg.status()).held > 0, { timeoutMs: 5000, what: 'a held packet' });
  await fg.stop('SIGKILL');
  const during = await curl(topo, { url: 'https://blocked.test/' });
  t.equal(during.httpCode, 200, 'no daemon: --queue-bypass lets new flows through');
  const fg2 = await startFlowgate(topo, 'rules:\n  - name: b\n    action: block\n    domains: [blocked.test]\n', 'again');
  const res = await pending;
  t.equal(res.httpCode, 200, 'the request held when the daemon died completes (retransmitted)');
  t.equal(res.body, 'hello from allowed.test\n', 'nothing allowed was lost');
  const blocked = await curl(topo, { url: 'https://blocked.test/' });
  t.equal(blocked.errorKind, 'reset', 'after the restart blocking works again');
  const s = await fg2.status();
  t.equal(s.received, s.verdicts);
  await fg2.stop();
});

t.test('a full kernel queue with fail_open accepts and counts', async (t) => {
  const topo = await fixture(t);
  await applyRules(topo);
  const mod = join(topo.tmpDir, 'never.mjs');
  writeFileSync(mod, 'export function decide() { return new Promise(() => {}); }\n');
  const fg = await startFlowgate(topo, `decide:\n  module: ${mod}\ndecision_timeout_ms: 20000\nqueue_maxlen: 3\nfail_open: true\n`);
  // Held requests fill the queue; the next flows pass because of FAIL_OPEN.
  const held = [1, 2, 3].map((i) => curl(topo, { url: `http://allowed.test/${i}`, maxTimeMs: 30000 }));
  await waitUntil(async () => (await readQueueStats(topo))[0]!.waiting >= 3, { timeoutMs: 5000, what: 'a full queue' });
  const more = await curl(topo, { url: 'http://allowed.test/4', maxTimeMs: 5000 });
  t.equal(more.httpCode, 200, 'the queue is full: fail-open lets the new flow through');
  const st = await fg.status();
  t.equal(st.kernel_queue_dropped, 0, 'nothing dropped');
  await fg.stop();
  for (const r of await Promise.all(held)) t.equal(r.httpCode, 200, 'held flows released on shutdown');
  void iptables;
});

t.test('behind a plain NFQUEUE rule (no mark guard) a repeated packet is not queued forever', async (t) => {
  // An operator's own `-j NFQUEUE` rule without flowgate's chain: each packet we repeat with a
  // mark comes back to the queue. It must be answered once more and pass, not loop.
  const topo = await fixture(t);
  await iptables(topo, ['-A', 'FORWARD', '-p', 'tcp', '-j', 'NFQUEUE', '--queue-num', '0']);
  const fg = await startFlowgate(topo, 'default: allow\n');
  for (const url of ['https://allowed.test/', 'http://allowed.test/']) {
    const r = await curl(topo, { url, maxTimeMs: 5000 });
    t.equal(r.httpCode, 200, `${url} answered`);
  }
  const st = await fg.status();
  t.ok(st.received < 200, `a bounded number of packets reached the daemon (${st.received})`);
  t.equal(st.received, st.verdicts, 'each got one verdict');
  await fg.stop();
});

t.test('a broken event stream (stdout closed) does not stop filtering', async (t) => {
  const topo = await fixture(t);
  await applyRules(topo);
  const config = join(topo.tmpDir, 'e.yaml');
  const socket = join(topo.tmpDir, 'e.sock');
  writeFileSync(config, `control: ${socket}\nrules:\n  - name: b\n    action: block\n    domains: [blocked.test]\n`);
  // stdout goes to a pipe whose reader exits at once: every write fails with EPIPE.
  const proc = topo.spawn('gw', ['sh', '-c', `${cliArgv('run', '--config', config).join(' ')} | true`]);
  await waitUntil(async () => (await readQueueStats(topo)).length === 1, { timeoutMs: 15000, what: 'queue bound' });
  for (let i = 0; i < 3; i++) t.equal((await curl(topo, { url: 'https://allowed.test/' })).httpCode, 200);
  t.equal((await curl(topo, { url: 'https://blocked.test/' })).errorKind, 'reset', 'still blocking');
  const status = JSON.parse((await topo.exec('gw', cliArgv('status', '--socket', socket), { check: true })).stdout);
  t.equal(status.received, status.verdicts);
  await proc.kill('SIGTERM', 10000);
});

t.test('a flood of new connections: allowed traffic keeps working, blocked stays blocked, every packet settled', async (t) => {
  const topo = await fixture(t);
  await applyRules(topo);
  const fg = await startFlowgate(topo, 'rules:\n  - name: b\n    action: block\n    domains: [blocked.test]\n');
  const server = topo.addrs(4).server;
  const flood = topo.exec('client', ['wrk', '-t', '2', '-c', '200', '-d', '4s', '-H', 'Connection: close',
    '-H', 'Host: allowed.test', `http://${server}/`], { timeoutMs: 30000 });
  await new Promise((r) => setTimeout(r, 1000));
  const during = await curl(topo, { url: 'https://allowed.test/' });
  t.equal(during.httpCode, 200, 'an allowed request gets through during the flood');
  const blocked = await curl(topo, { url: 'https://blocked.test/' });
  t.equal(blocked.errorKind, 'reset', 'a blocked one is still reset');
  const out = (await flood).stdout;
  const reqs = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
  t.ok(reqs > 500, `the flood made ${reqs} requests`);
  t.notMatch(out, /Non-2xx/, 'no allowed request failed');
  const s = await waitUntil(async () => {
    const st = await fg.status();
    return st.held === 0 && st.received === st.verdicts ? st : undefined;
  }, { timeoutMs: 10000, what: 'settled' });
  t.ok(s, 'received == verdicts, nothing held after the flood');
  // Each connection's SYN reached the engine before its data (else the flow looks midstream),
  // though the binding read the SYNs from NFLOG and the data from the queue while both kept coming.
  const st = await fg.status();
  t.ok(st.kernel.logged! >= 2 * reqs, `the handshakes came through NFLOG (${st.kernel.logged})`);
  t.equal(st.events.midstream ?? 0, 0, 'no flow looked midstream');
  t.match(st.kernel, { logEnobufs: 0, logIgnored: 0 }, 'no handshake copy was lost or refused');
  await fg.stop();
});

t.test('the event log\'s disk is full: filtering goes on, lost events are counted', async (t) => {
  const topo = await fixture(t);
  await applyRules(topo);
  const dir = mkdtempSync(join(tmpdir(), 'fg-full-'));
  execFile('mount', ['-t', 'tmpfs', '-o', 'size=8k', 'tmpfs', dir]);
  t.teardown(() => {
    execFile('umount', [dir]);
    spawn('rm', ['-rf', dir]);
  });
  const config = join(topo.tmpDir, 'full.yaml');
  const socket = join(topo.tmpDir, 'full.sock');
  writeFileSync(config, `control: ${socket}\nrules:\n  - name: b\n    action: block\n    domains: [blocked.test]\n`);
  const proc = topo.spawn('gw', ['sh', '-c', `exec ${cliArgv('run', '--config', config).join(' ')} > ${dir}/events.log`]);
  await waitUntil(async () => (await readQueueStats(topo)).length === 1, { timeoutMs: 15000, what: 'queue bound' });
  for (let i = 0; i < 40; i++) t.equal((await curl(topo, { url: 'http://allowed.test/' })).httpCode, 200);
  t.equal((await curl(topo, { url: 'https://blocked.test/' })).errorKind, 'reset', 'still blocking with the disk full');
  const status = JSON.parse((await topo.exec('gw', cliArgv('status', '--socket', socket), { check: true })).stdout);
  t.equal(status.received, status.verdicts, 'every packet settled');
  t.ok(status.events_dropped > 0, `events that did not fit were counted (${status.events_dropped})`);
  t.equal((await proc.kill('SIGTERM', 10000)).code, 0, 'exit 0');
});

function execFile(cmd: string, args: string[]): void {
  execFileSync(cmd, args, { stdio: 'ignore' });
}
