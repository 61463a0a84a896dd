/**
 * Issue 2 end to end: real kernel queue, real iptables, real servers and clients in a private
 * client - gateway - server namespace path. Runs as root; never skips.
 */
import t, { type Test } from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  checkPrerequisites, chromium, rawSegments, createTopology, curl, opensslClient, readQueueStats, recordOpensslHello,
  startServers, waitUntil, type Topology,
} from './harness/index.js';
import { BLOCK_RULES, applyRules, assertSettled, cliArgv, startFlowgate } from './flowgate.js';

checkPrerequisites(['ip', 'iptables', 'ip6tables', 'curl', 'openssl']);

async function fixture(t: Test, opts: Parameters<typeof createTopology>[0] = {}, rules: string[] = []): Promise<Topology> {
  const topo = await createTopology(opts);
  t.teardown(() => topo.destroy());
  await startServers(topo);
  await applyRules(topo, rules);
  return topo;
}

t.test('host mode: flowgate on the client itself (OUTPUT and INPUT), handshakes through NFLOG', async (t) => {
  const topo = await createTopology();
  t.teardown(() => topo.destroy());
  await startServers(topo);
  await topo.exec('client', cliArgv('rules', 'apply', '--mode', 'host'), { check: true });
  const fg = await startFlowgate(topo, BLOCK_RULES, 'host', cliArgv, 'client');
  for (const url of ['http://allowed.test/', 'https://allowed.test/']) {
    const res = await curl(topo, { url });
    t.equal(res.httpCode, 200, `${url}: 200`);
  }
  for (const url of ['http://blocked.test/', 'https://blocked.test/']) {
    t.equal((await curl(topo, { url })).errorKind, 'reset', `${url}: reset`);
  }
  t.ok((await fg.settledDecisions()).some((d) => d.app === 'tls' && d.sni === 'blocked.test' && d.verdict === 'block'),
    'the blocked hello was reported');
  const s = await assertSettled(t, topo, fg);
  // Four connections: the SYN copied in OUTPUT, the SYN-ACK in INPUT, none queued.
  t.ok(s.kernel.logged! >= 8, `the handshakes came through NFLOG (${s.kernel.logged})`);
  t.match(s.kernel, { handshakeAccepts: 0, logIgnored: 0 });
  t.equal(s.events.midstream ?? 0, 0, 'no flow looked midstream');
  t.equal(await fg.stop(), 0);
});

t.test('allowed and blocked names over HTTP and HTTPS, curl and openssl', async (t) => {
  const topo = await fixture(t);
  const fg = await startFlowgate(topo, BLOCK_RULES);

  for (const family of [4, 6] as const) {
    const ipv6 = family === 6;
    const http = await curl(topo, { url: 'http://allowed.test/', ipv6 });
    t.equal(http.httpCode, 200, `IPv${family} HTTP allowed.test: 200`);
    t.equal(http.body, 'hello from allowed.test\n');
    const https = await curl(topo, { url: 'https://allowed.test/', ipv6 });
    t.equal(https.httpCode, 200, `IPv${family} HTTPS allowed.test: 200`);
    t.equal(https.body, 'hello from allowed.test\n');

    for (const url of ['http://blocked.test/', 'https://blocked.test/']) {
      const res = await curl(topo, { url, ipv6 });
      t.equal(res.errorKind, 'reset', `IPv${family} ${url}: connection reset (${res.errorMessage})`);
      t.ok(res.wallMs < 1000, `IPv${family} ${url}: failed fast (${Math.round(res.wallMs)} ms)`);
    }
  }
  const okTls = await opensslClient(topo, { servername: 'allowed.test', alpn: ['http/1.1'] });
  t.ok(okTls.connected, 'openssl s_client completes the handshake with allowed.test');
  const badTls = await opensslClient(topo, { servername: 'blocked.test' });
  t.notOk(badTls.connected, 'openssl s_client gets no handshake with blocked.test');
  t.ok(badTls.reset, 'openssl sees a reset');

  const blocked = (await fg.settledDecisions()).filter((d) => d.verdict === 'block');
  t.ok(blocked.length >= 5, `block decisions were reported (${blocked.length})`);
  t.ok(blocked.every((d) => d.reason === 'rule:no-blocked'));
  t.ok(fg.decisions().some((d) => d.app === 'http' && d.host === 'allowed.test' && d.method === 'GET' && d.path === '/'));
  t.ok(fg.decisions().some((d) => d.app === 'tls' && d.sni === 'allowed.test' && d.verdict === 'allow'));
  await assertSettled(t, topo, fg);
  // Ten connections (8 curl, 2 openssl): each SYN and SYN-ACK skipped the queue and reached the
  // daemon as an NFLOG copy (the rules' handshake chain, group 0), none queued.
  const kernel = (await fg.status()).kernel;
  t.ok(kernel.logged! >= 20, `the daemon read the handshakes from NFLOG group 0 (${kernel.logged})`);
  t.equal(kernel.handshakeAccepts, 0, 'no bare handshake went through the queue');
  t.match(kernel, { logEnobufs: 0, logIgnored: 0 }, 'no copy lost, none that was not a handshake');
  // Allowed TLS connections (curl over IPv4 and IPv6, openssl): each ended either on the rules'
  // answer chain (a hello the binding let on with the answer mark, guarded by FLOWGATE_ANSRPF
  // here, without --rpfilter; the next test has --rpfilter) or on the client's record after the
  // hello, which the binding let through, armed by the engine.
  t.equal(kernel.answered, kernel.helloAnswerMarks, 'every hello let on with the answer mark ended on the server\'s answer in the rules');
  t.equal(kernel.afterHelloAllows! + kernel.answered!, 3,
    `each of the 3 allowed hellos ended without JavaScript's verdict on the next record (${kernel.answered} in the rules)`);
  // The first allowed hello taught the binding the name; the later ones (curl over IPv6, openssl)
  // it could let on itself, unless their hello was already read when the SYN's arm came.
  t.ok(kernel.helloAllows! >= 1, `the binding let allowed.test hellos on itself (${kernel.helloAllows})`);
  for (const cmd of ['iptables', 'ip6tables']) {
    // Bare ACKs (the handshake's third packet, ACKs of responses) skip the queue by the u32 rules.
    const listing = (await topo.exec('gw', [cmd, '-w', '-L', 'FLOWGATE', '-v', '-x', '-n'], { check: true })).stdout;
    const acks = listing.split('\n').filter((l) => l.includes('&0x37=0x10')).reduce((n, l) => n + Number(l.trim().split(/\s+/)[0]), 0);
    t.ok(acks > 0, `${cmd}: ${acks} bare ACKs went past the queue`);
  }
  t.equal(await fg.stop(), 0, 'SIGTERM: exit 0');
});

t.test('the binding lets plain hellos of allowed names on itself; a reload takes the names back', async (t) => {
  const topo = await fixture(t, {}, ['--rpfilter']);
  const fg = await startFlowgate(topo, BLOCK_RULES);
  const requests = 8;
  for (let i = 0; i < requests; i++) {
    const res = await curl(topo, { url: 'https://allowed.test/' });
    t.equal(res.httpCode, 200, `HTTPS request ${i + 1}: 200`);
  }
  let k = (await fg.status()).kernel;
  // The first hello teaches the binding the name. The binding arms each connection on its SYN as
  // it reads the log group's copy (armHellosOnSyn), before JavaScript sees it, so every later
  // hello is let on by the binding, however late JavaScript reads the SYN.
  t.equal(k.helloAllows, requests - 1, 'the binding let every hello after the first on itself');
  // (The engine turns that on at the first packet it reads: the first SYN came before, and the
  // engine armed that connection itself.)
  t.ok(k.synArms! >= requests - 1, `it armed each later connection on its SYN (${k.synArms})`);
  t.ok(k.helloArmed! <= 1, `the engine armed at most the first itself (${k.helloArmed}): it only kept its books`);
  t.equal(k.helloNames, 1, 'it knows one name (allowed.test on 443)');
  // A hello let on with the answer mark (any whose echoed session id holds no 0x16: curl's random
  // ones, 88% of the time) ends on the server's ServerHello in the rules, which copy it to the
  // daemon: the client's next flight never reaches the queue, and the engine ends the flow.
  t.ok(k.helloAnswerMarks! >= 1, `hellos let on with the answer mark (${k.helloAnswerMarks} of ${k.helloAllows})`);
  t.equal(k.answered, k.helloAnswerMarks, 'the rules ended each of them on the server\'s answer');
  t.equal(k.afterHelloAllows! + k.answered!, requests, 'every connection\'s inspection ended without JavaScript\'s verdict on the client\'s next record');
  const ended = await fg.status();
  t.equal(ended.events.kernel_answers, k.answered, 'the engine ended every flow the rules ended');
  t.notOk(ended.events.kernel_answer_ignored, 'and ignored no copy');
  // The engine still reads every hello and reports every decision.
  const tls = (await fg.settledDecisions()).filter((d) => d.app === 'tls');
  t.equal(tls.length, requests, 'a TLS decision reported for every request');
  t.ok(tls.every((d) => d.sni === 'allowed.test' && d.verdict === 'allow' && d.reason === 'default'));
  const blocked = await curl(topo, { url: 'https://blocked.test/' });
  t.equal(blocked.errorKind, 'reset', 'a blocked name is still blocked');

  writeFileSync(fg.config, `default: allow\nrules:\n  - name: now-blocked\n    action: block\n    domains: [allowed.test]\ncontrol: ${fg.socket}\n`);
  fg.process.signalGroup('SIGHUP');
  await fg.process.waitForLine(/reloaded config/, { stream: 'stderr' });
  const after = await curl(topo, { url: 'https://allowed.test/' });
  t.equal(after.errorKind, 'reset', 'after the reload the name the binding knew is blocked');
  t.equal((await fg.waitForDecision((d) => d.reason === 'rule:now-blocked')).sni, 'allowed.test');
  k = (await fg.status()).kernel;
  t.equal(k.helloNames, 0, 'the binding forgot the old policy\'s names');
  await assertSettled(t, topo, fg);
  t.equal(await fg.stop(), 0, 'SIGTERM: exit 0');
});

t.test('a policy that answers after 300 ms: requests complete, packets were held', async (t) => {
  const topo = await fixture(t);
  const mod = join(topo.tmpDir, 'slow.mjs');
  writeFileSync(mod, `export async function decide(info) {
  await new Promise((r) => setTimeout(r, 300));
  return { verdict: (info.sni ?? info.host) === 'blocked.test' ? 'block' : 'allow', reason: 'slow' };
}\n`);
  const fg = await startFlowgate(topo, `default: allow\ndecide:\n  module: ${mod}\ndecision_timeout_ms: 2000\n`);
  for (const url of ['https://allowed.test/', 'http://allowed.test/']) {
    const res = await curl(topo, { url });
    t.equal(res.httpCode, 200, `${url}: 200 after a slow decision`);
    t.equal(res.body, 'hello from allowed.test\n', 'nothing lost');
    t.ok(res.wallMs >= 250, `it waited for the policy (${Math.round(res.wallMs)} ms)`);
  }
  const slow = (await fg.settledDecisions()).filter((d) => d.reason === 'module:slow');
  t.equal(slow.length, 2);
  for (const d of slow) {
    t.ok(d.held_packets > 0, `held_packets > 0 (${d.held_packets})`);
    t.ok(d.held_ms >= 250, `held_ms ${d.held_ms}`);
  }
  const blocked = await curl(topo, { url: 'https://blocked.test/' });
  t.equal(blocked.errorKind, 'reset');
  await assertSettled(t, topo, fg);
  await fg.stop();
});

t.test('a policy that never answers: on_timeout applies within decision_timeout_ms + 0.5 s', async (t) => {
  const topo = await fixture(t);
  const mod = join(topo.tmpDir, 'never.mjs');
  writeFileSync(mod, 'export function decide() { return new Promise(() => {}); }\n');
  const fg = await startFlowgate(topo, `decide:\n  module: ${mod}\ndecision_timeout_ms: 1000\non_timeout: block\n`);
  const res = await curl(topo, { url: 'https://allowed.test/', maxTimeMs: 5000 });
  t.equal(res.errorKind, 'reset', 'blocked on timeout');
  t.ok(res.wallMs < 1500, `within 1.5 s (${Math.round(res.wallMs)} ms)`);
  const d = await fg.waitForDecision((x) => x.reason === 'timeout');
  t.equal(d.verdict, 'block');
  await fg.stop();

  const fg2 = await startFlowgate(topo, `decide:\n  module: ${mod}\ndecision_timeout_ms: 800\non_timeout: allow\n`, 'fg2');
  const ok = await curl(topo, { url: 'http://allowed.test/', maxTimeMs: 5000 });
  t.equal(ok.httpCode, 200, 'allowed on timeout');
  t.ok(ok.wallMs >= 700 && ok.wallMs < 1300 + 200, `after the deadline (${Math.round(ok.wallMs)} ms)`);
  await assertSettled(t, topo, fg2);
  await fg2.stop();
});

/** The ClientHello `openssl s_client` sends for `servername`, recorded on a local listener. */
t.test("openssl's ClientHello written as three segments: allowed gets a ServerHello, blocked a reset", async (t) => {
  const topo = await fixture(t);
  const fg = await startFlowgate(topo, BLOCK_RULES);
  for (const name of ['allowed.test', 'blocked.test']) {
    const hello = await recordOpensslHello(name);
    const cuts = [0, 7, Math.floor(hello.length / 2), hello.length];
    const chunks = [0, 1, 2].map((i) => hello.subarray(cuts[i], cuts[i + 1]));
    const res = await rawSegments(topo, { chunks, port: 443, delayMs: 40, waitMs: 1500 });
    const d = await fg.waitForDecision((x) => x.sni === name);
    t.ok(d.held_packets >= 3, `${name}: held as ${d.held_packets} packets`);
    if (name === 'allowed.test') {
      t.equal(res.response[0], 0x16, 'the server answered with a TLS handshake record (ServerHello)');
    } else {
      t.equal(res.error, 'reset', 'reset');
      t.equal(res.response.length, 0, 'nothing from the server');
    }
  }
  await assertSettled(t, topo, fg);
  await fg.stop();
});

t.test('ClientHellos in three or more segments (offloads off, MSS 536): Chromium post-quantum hello', async (t) => {
  const topo = await fixture(t, { offloads: false, serverAdvMss: 536 });
  const fg = await startFlowgate(topo, BLOCK_RULES);
  const ok = await chromium(topo, { url: 'https://allowed.test/' });
  t.match(ok.dom, /hello from allowed\.test/, 'Chromium loads the allowed page');
  const d = await fg.waitForDecision((x) => x.sni === 'allowed.test');
  t.ok(d.held_packets >= 3, `Chromium's post-quantum hello was held as ${d.held_packets} packets`);
  const bad = await chromium(topo, { url: 'https://blocked.test/' });
  t.notMatch(bad.dom ?? '', /hello from/, 'Chromium does not get the blocked page');
  t.match(bad.netError ?? '', /RESET|CONNECTION_CLOSED|ABORTED/, `Chromium sees ${bad.netError}`);
  const b = await fg.waitForDecision((x) => x.sni === 'blocked.test');
  t.equal(b.verdict, 'block');
  t.ok(b.held_packets >= 3, `blocked hello was held as ${b.held_packets} packets`);
  await assertSettled(t, topo, fg);
  await fg.stop();
});

t.test('SIGTERM with flows held: settled, exit 0, traffic keeps flowing through queue bypass', async (t) => {
  const topo = await fixture(t);
  const mod = join(topo.tmpDir, 'never.mjs');
  writeFileSync(mod, 'export function decide() { return new Promise(() => {}); }\n');
  const fg = await startFlowgate(topo, `decide:\n  module: ${mod}\ndecision_timeout_ms: 30000\non_shutdown: allow\n`);
  const pending = curl(topo, { url: 'http://allowed.test/', maxTimeMs: 10000 });
  await waitUntil(async () => (await fg.status()).held > 0, { timeoutMs: 5000, what: 'a held packet' });
  const flows = await fg.flows();
  t.ok(flows.flows.some((f) => String(f.waiting_for).startsWith('decision')), 'flows shows what the flow waits for');
  t.equal(await fg.stop(), 0, 'exit 0 on SIGTERM');
  const res = await pending;
  t.equal(res.httpCode, 200, 'the held request was released (on_shutdown allow) and completed');
  const after = await curl(topo, { url: 'https://blocked.test/' });
  t.equal(after.httpCode, 200, 'with no daemon, --queue-bypass lets traffic through');
  const q = await readQueueStats(topo);
  t.equal(q.length, 0, 'the queue is unbound');
});
