import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { parseConfig, type Config } from '../../src/policy/config.js';
import { compilePolicy, loadPolicy, type Decision, type FlowInfo } from '../../src/policy/policy.js';
import { cacheKey } from '../../src/policy/sources.js';

const dir = mkdtempSync(join(tmpdir(), 'flowgate-sources-'));
let counter = 0;

function config(yaml: string): Config {
  const file = join(dir, `s${++counter}.yaml`);
  writeFileSync(file, yaml);
  const { config, errors } = parseConfig(yaml, file);
  if (!config) throw new Error(errors.map((e) => e.message).join('\n'));
  return config;
}

const info: FlowInfo = {
  flow: 'f1', src: '10.0.1.2', sport: 40000, dst: '10.0.2.2', dport: 443, app: 'tls', sni: 'ask.test', alpn: ['h2'],
};

interface Service {
  url: string;
  requests: { body: unknown; headers: http.IncomingHttpHeaders }[];
  connections: number;
  close(): Promise<void>;
}

/** A local decision service; `reply` answers each request (status, body, delay in ms). */
async function service(reply: (body: FlowInfo) => { status?: number; body: string; delay?: number }): Promise<Service> {
  const requests: Service['requests'] = [];
  let connections = 0;
  const server = http.createServer((req, res) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (text += c));
    req.on('end', () => {
      const body = JSON.parse(text) as FlowInfo;
      requests.push({ body, headers: req.headers });
      const answer = reply(body);
      const send = () => res.writeHead(answer.status ?? 200, { 'content-type': 'application/json' }).end(answer.body);
      if (answer.delay) setTimeout(send, answer.delay);
      else send();
    });
  });
  server.on('connection', () => connections++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/decide`,
    requests,
    get connections() {
      return connections;
    },
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

function webhookConfig(url: string, extra = ''): Config {
  return config(`on_error: block\ndecide:\n  webhook:\n    url: "${url}"\n${extra}`);
}

t.test('50 concurrent identical questions make one request; the answer is then cached', async (t) => {
  const svc = await service(() => ({ body: '{"verdict":"block","reason":"listed"}', delay: 20 }));
  t.teardown(svc.close);
  const policy = compilePolicy(webhookConfig(svc.url));
  t.teardown(() => policy.close());
  const answers = await Promise.all(Array.from({ length: 50 }, () => policy.decide({ ...info, sport: 40000 + Math.floor(Math.random() * 1000) })));
  t.equal(svc.requests.length, 1);
  for (const a of answers) t.same(a, { verdict: 'block', reason: 'webhook:listed' });
  const cached = policy.decide(info);
  t.notOk(cached instanceof Promise, 'a cached answer is synchronous');
  t.same(cached, { verdict: 'block', reason: 'webhook:listed' });
  t.equal(svc.requests.length, 1);
  const { body, headers } = svc.requests[0]!;
  t.equal(headers['content-type'], 'application/json');
  t.match(body, { flow: 'f1', src: '10.0.1.2', dst: '10.0.2.2', dport: 443, app: 'tls', sni: 'ask.test', alpn: ['h2'] });
  t.notOk('verdict' in (body as object));
});

t.test('different questions ask separately, over kept-alive connections', async (t) => {
  const svc = await service((q) => ({ body: JSON.stringify({ verdict: q.sni === 'bad.test' ? 'block' : 'allow' }) }));
  t.teardown(svc.close);
  const policy = compilePolicy(webhookConfig(svc.url));
  t.teardown(() => policy.close());
  for (let i = 0; i < 10; i++) t.same(await policy.decide({ ...info, sni: `n${i}.test` }), { verdict: 'allow', reason: 'webhook' });
  t.same(await policy.decide({ ...info, sni: 'bad.test' }), { verdict: 'block', reason: 'webhook' });
  t.equal(svc.requests.length, 11);
  t.equal(svc.connections, 1, 'sequential questions reuse one connection');
});

t.test('a slow answer within timeout_ms is used; a slower one gives on_error', async (t) => {
  const svc = await service(() => ({ body: '{"verdict":"allow","reason":"slow"}', delay: 200 }));
  t.teardown(svc.close);
  const patient = compilePolicy(webhookConfig(svc.url, '    timeout_ms: 1000\n'));
  t.teardown(() => patient.close());
  t.same(await patient.decide(info), { verdict: 'allow', reason: 'webhook:slow' });
  const failures: Error[] = [];
  const hasty = compilePolicy(webhookConfig(svc.url, '    timeout_ms: 100\n'), { onSourceError: (e) => failures.push(e) });
  t.teardown(() => hasty.close());
  const started = performance.now();
  t.same(await hasty.decide(info), { verdict: 'block', reason: 'error' });
  const took = performance.now() - started;
  t.ok(took >= 95 && took < 400, `gave up after ${took.toFixed(0)} ms`);
  t.match(failures[0]?.message, /within 100 ms/);
});

t.test('an unreachable service gives on_error within the timeout', async (t) => {
  const svc = await service(() => ({ body: '{}' }));
  const url = svc.url;
  await svc.close();
  const policy = compilePolicy(webhookConfig(url, '    timeout_ms: 300\n'));
  t.teardown(() => policy.close());
  const started = performance.now();
  t.same(await policy.decide(info), { verdict: 'block', reason: 'error' });
  t.ok(performance.now() - started < 300);
});

t.test('bad replies give on_error', async (t) => {
  const replies: { status?: number; body: string }[] = [
    { body: 'not json' },
    { body: '{"verdict":"maybe"}' },
    { body: '{"verdict":"ALLOW"}' },
    { body: '["allow"]' },
    { body: '{"verdict":"allow","reason":5}' },
    { body: 'null' },
    { status: 500, body: '{"verdict":"allow"}' },
    { status: 204, body: '' },
    { body: JSON.stringify({ verdict: 'allow', reason: 'x'.repeat(70000) }) },
  ];
  let next = 0;
  const svc = await service(() => replies[next++]!);
  t.teardown(svc.close);
  const policy = compilePolicy(webhookConfig(svc.url, '    error_cache_ttl_s: 0\n'));
  t.teardown(() => policy.close());
  for (let i = 0; i < replies.length; i++) {
    t.same(await policy.decide(info), { verdict: 'block', reason: 'error' }, JSON.stringify(replies[i]).slice(0, 60));
  }
  t.equal(svc.requests.length, replies.length, 'failures with error_cache_ttl_s 0 are not cached');
});

t.test('reasons are cut and cleaned', async (t) => {
  const svc = await service(() => ({ body: JSON.stringify({ verdict: 'allow', reason: `a\nb${'c'.repeat(300)}` }) }));
  t.teardown(svc.close);
  const policy = compilePolicy(webhookConfig(svc.url));
  t.teardown(() => policy.close());
  const { reason } = (await policy.decide(info)) as Decision;
  t.equal(reason, `webhook:a b${'c'.repeat(197)}`);
});

t.test('cache TTLs follow the injected clock', async (t) => {
  let verdict = 'allow';
  let fail = false;
  const svc = await service(() => (fail ? { status: 503, body: '' } : { body: JSON.stringify({ verdict }) }));
  t.teardown(svc.close);
  let now = 1000;
  const policy = compilePolicy(webhookConfig(svc.url, '    cache_ttl_s: 60\n    error_cache_ttl_s: 5\n'), { now: () => now });
  t.teardown(() => policy.close());
  t.same(await policy.decide(info), { verdict: 'allow', reason: 'webhook' });
  verdict = 'block';
  now += 59_999;
  t.same(policy.decide(info), { verdict: 'allow', reason: 'webhook' }, 'still cached just before the TTL');
  now += 1;
  t.same(await policy.decide(info), { verdict: 'block', reason: 'webhook' }, 'asked again at the TTL');
  t.equal(svc.requests.length, 2);
  fail = true;
  now += 60_000;
  t.same(await policy.decide(info), { verdict: 'block', reason: 'error' });
  fail = false;
  verdict = 'allow';
  now += 4_999;
  t.same(policy.decide(info), { verdict: 'block', reason: 'error' }, 'the failure is cached for error_cache_ttl_s');
  now += 1;
  t.same(await policy.decide(info), { verdict: 'allow', reason: 'webhook' });
  t.equal(svc.requests.length, 4);
});

t.test('cache key', async (t) => {
  const key = (i: FlowInfo, byClient = false) => cacheKey(i, byClient);
  t.equal(key(info), key({ ...info, flow: 'f2', sport: 1, src: '10.9.9.9', dst: '192.0.2.1' }), 'flow, ports, addresses ignored for named flows');
  t.not(key(info), key({ ...info, sni: 'other.test' }));
  t.not(key(info), key({ ...info, dport: 8443 }));
  t.not(key(info), key({ ...info, src: '10.9.9.9' }, true), 'cache_by_client keeps the client');
  const nameless = { ...info, sni: null };
  t.not(key(nameless), key({ ...nameless, dst: '192.0.2.1' }), 'nameless flows are keyed by destination');
  const req = { ...info, app: 'http' as const, sni: undefined, host: 'h.test', method: 'GET', path: '/a' };
  t.not(key(req), key({ ...req, path: '/b' }));
  t.not(key(req), key({ ...req, method: 'POST' }));
});

t.test('close settles questions in flight with on_error', async (t) => {
  const svc = await service(() => ({ body: '{"verdict":"allow"}', delay: 1000 }));
  t.teardown(svc.close);
  const policy = compilePolicy(webhookConfig(svc.url, '    timeout_ms: 5000\n'));
  const pending = policy.decide(info);
  await new Promise((r) => setTimeout(r, 50));
  await policy.close();
  t.same(await pending, { verdict: 'block', reason: 'error' });
  t.same(policy.decide({ ...info, sni: 'later.test' }), { verdict: 'block', reason: 'error' });
});

t.test('module source', async (t) => {
  const write = (name: string, code: string): string => {
    writeFileSync(join(dir, name), code);
    return name;
  };
  const moduleConfig = (file: string) => config(`on_error: block\ndecide: {module: ${file}}\n`);
  const good = write('good.mjs', `export async function decide(info) {
    if (info.sni === 'throw.test') throw new Error('boom');
    if (info.sni === 'reject.test') return Promise.reject(new Error('nope'));
    if (info.sni === 'bad.test') return { verdict: 'perhaps' };
    if (info.sni === 'mutate.test') { info.sni = 'x'; }
    return { verdict: info.sni === 'no.test' ? 'block' : 'allow', reason: 'by module' };
  }\n`);
  const failures: Error[] = [];
  const policy = await loadPolicy(moduleConfig(good), { onSourceError: (e) => failures.push(e) });
  t.teardown(() => policy.close());
  t.same(await policy.decide({ ...info, sni: 'no.test' }), { verdict: 'block', reason: 'module:by module' });
  t.same(await policy.decide({ ...info, sni: 'yes.test' }), { verdict: 'allow', reason: 'module:by module' });
  for (const sni of ['throw.test', 'reject.test', 'bad.test', 'mutate.test']) {
    t.same(await policy.decide({ ...info, sni }), { verdict: 'block', reason: 'error' }, sni);
  }
  t.match(failures.map((e) => e.message), [/boom/, /nope/, /did not return/, /read.only|Cannot assign/]);

  const sync = write('sync.mjs', 'export function decide() { return { verdict: "block" }; }\n');
  const syncPolicy = await loadPolicy(moduleConfig(sync));
  t.same(await syncPolicy.decide(info), { verdict: 'block', reason: 'module' });

  write('edit.mjs', 'export const decide = async () => ({ verdict: "allow", reason: "v1" });\n');
  const v1 = await loadPolicy(moduleConfig('edit.mjs'));
  t.same(await v1.decide(info), { verdict: 'allow', reason: 'module:v1' });
  write('edit.mjs', 'export const decide = async () => ({ verdict: "allow", reason: "v2" });\n');
  const v2 = await loadPolicy(moduleConfig('edit.mjs'));
  t.same(await v2.decide(info), { verdict: 'allow', reason: 'module:v2' }, 'a reload imports the edited module');

  const none = write('none.mjs', 'export const other = 1;\n');
  await t.rejects(loadPolicy(moduleConfig(none)), { code: 'ERR_POLICY_MODULE', message: /does not export a function "decide"/ });
  const broken = write('broken.mjs', 'export function decide( {\n');
  await t.rejects(loadPolicy(moduleConfig(broken)), { code: 'ERR_POLICY_MODULE' });
  const lazy = compilePolicy(moduleConfig(broken));
  t.same(await lazy.decide(info), { verdict: 'block', reason: 'error' }, 'an unloadable module answers on_error');
});
