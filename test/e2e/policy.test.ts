/**
 * Issue 5 end to end: request-by-request decisions on keep-alive connections, the webhook
 * source with single-flight lookups, block pages and TLS alerts, reload under traffic.
 */
import t, { type Test } from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  checkPrerequisites, createTopology, curl, opensslClient, startServers, waitUntil, repoRoot, type Topology,
} from './harness/index.js';
import { applyRules, startFlowgate } from './flowgate.js';

checkPrerequisites(['ip', 'iptables', 'curl', 'openssl']);

async function fixture(t: Test): Promise<Topology> {
  const topo = await createTopology();
  t.teardown(() => topo.destroy());
  await startServers(topo);
  await applyRules(topo);
  return topo;
}

/** curl with several URLs on one connection; returns the status codes in order. */
async function curlMany(topo: Topology, urls: string[]): Promise<{ codes: string[]; stderr: string }> {
  const server = topo.addrs(4).server;
  const res = await topo.exec('client', ['curl', '-s', '--max-time', '10',
    '--resolve', `allowed.test:80:${server}`, '-o', '/dev/null', '-w', '%{http_code} %{num_connects}\\n', ...urls]);
  return { codes: res.stdout.split('\n').filter((l) => /^\d{3} \d+$/.test(l)), stderr: res.stderr };
}

t.test('one keep-alive connection: every request is its own pause/resume cycle', async (t) => {
  const topo = await fixture(t);
  const mod = join(topo.tmpDir, 'paths.mjs');
  writeFileSync(mod, `export async function decide(info) {
  await new Promise((r) => setTimeout(r, 100));
  return { verdict: info.path === '/blocked' ? 'block' : 'allow', reason: 'paths' };
}\n`);
  const fg = await startFlowgate(topo, `decide:\n  module: ${mod}\nblock_action: page\n`);
  const all = await curlMany(topo, ['http://allowed.test/a', 'http://allowed.test/b', 'http://allowed.test/c']);
  t.same(all.codes, ['200 1', '200 0', '200 0'], 'three requests on one connection');
  const d1 = (await fg.settledDecisions()).filter((d) => d.app === 'http');
  t.equal(d1.length, 3, 'three decisions');
  t.equal(new Set(d1.map((d) => d.flow)).size, 1, 'all on one flow');
  t.ok(d1.every((d) => d.held_packets >= 1 && d.held_ms >= 80), 'each was paused while the policy thought');

  const mixed = await curlMany(topo, ['http://allowed.test/a', 'http://allowed.test/blocked', 'http://allowed.test/c']);
  t.same(mixed.codes, ['200 1', '403 0', '200 1'],
    'allowed, then the block page (403) on the same connection, then allowed on a new one');
  const d2 = (await fg.settledDecisions()).filter((d) => d.app === 'http').slice(3);
  t.same(d2.map((d) => [d.path, d.verdict]), [['/a', 'allow'], ['/blocked', 'block'], ['/c', 'allow']]);
  t.equal(d2[0]!.flow, d2[1]!.flow, 'the blocked request was the second cycle of the first flow');
  const s = await fg.status();
  t.equal(s.received, s.verdicts);
  t.equal(s.held, 0);
  await fg.stop();
});

t.test('block page reaches curl; TLS alert reaches openssl s_client', async (t) => {
  const topo = await fixture(t);
  const fg = await startFlowgate(topo, `block_action: page\ntls_alert: true\nrules:\n  - name: b\n    action: block\n    domains: [blocked.test]\n`);
  const page = await curl(topo, { url: 'http://blocked.test/' });
  t.equal(page.httpCode, 403, 'curl gets the 403 page');
  t.match(page.body, /403 Blocked/);
  const tls = await opensslClient(topo, { servername: 'blocked.test' });
  t.notOk(tls.connected);
  t.match(tls.output, /access denied|alert number 49/i, 'openssl reports the access_denied alert');
  const ok = await curl(topo, { url: 'https://allowed.test/' });
  t.equal(ok.httpCode, 200);
  await fg.stop();
});

t.test('webhook: 50 concurrent connections to one name share one lookup; a dead webhook gives on_error', async (t) => {
  const topo = await fixture(t);
  const hook = topo.spawn('gw', [process.execPath, join(repoRoot(), 'test', 'e2e', 'fixtures', 'webhook.mjs'), '9099', '200']);
  await hook.waitForLine(/webhook listening/);
  const fg = await startFlowgate(topo, 'decide:\n  webhook: {url: "http://127.0.0.1:9099/decide", timeout_ms: 1000, cache_ttl_s: 60}\n');
  const started = performance.now();
  const results = await Promise.all(Array.from({ length: 50 }, () => curl(topo, { url: 'https://allowed.test/', maxTimeMs: 10000 })));
  t.equal(results.filter((r) => r.httpCode === 200).length, 50, 'all 50 complete');
  t.ok(performance.now() - started < 8000);
  const count = await topo.exec('gw', ['curl', '-s', 'http://127.0.0.1:9099/count']);
  t.same(JSON.parse(count.stdout), { questions: 1 }, 'one lookup for 50 identical questions');
  const blocked = await curl(topo, { url: 'https://blocked.test/' });
  t.equal(blocked.errorKind, 'reset', 'the webhook can block');
  await fg.stop();
  await hook.kill();

  const fg2 = await startFlowgate(topo, 'decide:\n  webhook: {url: "http://127.0.0.1:9098/decide", timeout_ms: 300}\non_error: block\n', 'dead');
  const t0 = performance.now();
  const res = await curl(topo, { url: 'https://allowed.test/' });
  t.equal(res.errorKind, 'reset', 'on_error: block');
  t.ok(performance.now() - t0 < 1500, 'within the webhook timeout');
  const d = await fg2.waitForDecision(() => true);
  t.equal(d.reason, 'error');
  await fg2.stop();
});

t.test('reload under traffic: no flow lost, the new rule applies to new decisions', async (t) => {
  const topo = await fixture(t);
  const fg = await startFlowgate(topo, 'default: allow\n');
  let stop = false;
  let ok = 0;
  let failed = 0;
  const traffic = (async () => {
    while (!stop) {
      const r = await curl(topo, { url: 'https://allowed.test/' });
      if (r.httpCode === 200) ok++;
      else failed++;
    }
  })();
  await waitUntil(() => ok >= 3, { timeoutMs: 10000, what: 'traffic' });
  writeFileSync(fg.config, `default: allow\nrules:\n  - name: new\n    action: block\n    domains: [blocked.test]\ncontrol: ${fg.socket}\n`);
  fg.process.signalGroup('SIGHUP');
  await fg.process.waitForLine(/reloaded config/, { stream: 'stderr' });
  await waitUntil(() => ok >= 6, { timeoutMs: 10000, what: 'traffic after reload' });
  stop = true;
  await traffic;
  t.equal(failed, 0, `no allowed request failed across the reload (${ok} ok)`);
  const b = await curl(topo, { url: 'https://blocked.test/' });
  t.equal(b.errorKind, 'reset', 'the new rule blocks');
  t.equal((await fg.waitForDecision((d) => d.sni === 'blocked.test')).reason, 'rule:new');
  // A broken config is reported and the old one kept.
  writeFileSync(fg.config, 'default: maybe\n');
  fg.process.signalGroup('SIGHUP');
  await fg.process.waitForLine(/reload failed/, { stream: 'stderr' });
  const still = await curl(topo, { url: 'https://blocked.test/' });
  t.equal(still.errorKind, 'reset', 'the previous config still applies');
  await fg.stop();
});
