import { existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { checkConfigFile } from '../../src/policy/check.js';
import { ConfigLoadError, defaultConfig, loadConfig, parseConfig } from '../../src/policy/config.js';

const dir = mkdtempSync(join(tmpdir(), 'flowgate-config-'));
let counter = 0;

/** Writes YAML (and optional side files) to a fresh file; returns its path and the parse. */
function parse(yaml: string, files: Record<string, string> = {}) {
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  const file = join(dir, `c${++counter}.yaml`);
  writeFileSync(file, yaml);
  return { file, ...parseConfig(yaml, file) };
}

/** The error lines of a broken config, `FILE` replaced by the config's name. */
function errors(yaml: string, files: Record<string, string> = {}): string[] {
  const result = parse(yaml, files);
  return result.errors.map((e) => e.message.replace(result.file, 'FILE').replace(dir, 'DIR'));
}

t.test('empty file gives every default', async (t) => {
  const { config, errors: errs } = parse('');
  t.same(errs, []);
  t.same(config, { ...defaultConfig(), file: resolve(dir, `c${counter}.yaml`) });
  t.same(parse('# only a comment\n').config?.rules, []);
  t.same(parse('rules:\n').config?.rules, []);
});

t.test('every key', async (t) => {
  writeFileSync(join(dir, 'policy.mjs'), 'export async function decide() { return { verdict: "allow" }; }\n');
  const { config, errors: errs } = parse(`
queues: "2:5"
default: block
decision_timeout_ms: 1500
on_timeout: block
block_action: page
tls_alert: true
on_error: block
metrics: "[::1]:9475"
control: sock/control.sock
on_shutdown: block
on_conflict: drop-packet
on_ambiguous: allow
on_invalid: allow
on_limit: allow
midstream: allow
fail_open: true
queue_maxlen: 1024
handshake_log: false
marks: {mask: "0xf0", allow: 0x10, block: 32, inspect: "0x30"}
limits: {max_flows: 1000, max_inspecting_flows: 100, max_held_packets_per_flow: 8, max_held_bytes_per_flow: 9000,
  max_ooo_bytes_per_flow: 8000, max_held_bytes_total: 1000000, max_hello_bytes: 16384, max_request_head_bytes: 8192}
timeouts: {syn_s: 5, established_s: 600, closing_s: 2.5, inspecting_s: 10}
log_format: pretty
decide:
  module: policy.mjs
rules:
  - name: everything
    action: block
    domains: [Blocked.Test, "=exact.test", bücher.example]
    lists: [list.txt]
    clients: [10.0.0.0/8, "2001:db8::/32", 192.0.2.1]
    ports: [443, "8000-8100"]
    app: [tls, http]
    methods: [get, POST]
    paths: ["/admin/**"]
    alpn: [h2, http/1.1]
    ja4: [T13D1516H2_8daaf6152771_e5627efa2ab1]
    ech: false
    named: true
  - name: single-values
    action: allow
    app: unknown
    ports: 22
`, { 'list.txt': 'listed.test\n' });
  t.same(errs, []);
  const c = config!;
  t.same(c.queues, { first: 2, last: 5 });
  t.equal(c.default, 'block');
  t.equal(c.decisionTimeoutMs, 1500);
  t.equal(c.onTimeout, 'block');
  t.equal(c.blockAction, 'page');
  t.equal(c.tlsAlert, true);
  t.equal(c.onError, 'block');
  t.same(c.metrics, { host: '::1', port: 9475 });
  t.equal(c.control, join(dir, 'sock/control.sock'));
  t.equal(c.onShutdown, 'block');
  t.equal(c.onConflict, 'drop-packet');
  t.equal(c.onAmbiguous, 'allow');
  t.equal(c.onInvalid, 'allow');
  t.equal(c.onLimit, 'allow');
  t.equal(c.midstream, 'allow');
  t.equal(c.failOpen, true);
  t.equal(c.queueMaxlen, 1024);
  t.equal(c.handshakeLog, false);
  t.same(c.marks, { mask: 0xf0, allow: 0x10, block: 0x20, inspect: 0x30, answer: 0 });
  t.same(c.limits, {
    maxFlows: 1000, maxInspectingFlows: 100, maxHeldPacketsPerFlow: 8, maxHeldBytesPerFlow: 9000,
    maxOooBytesPerFlow: 8000, maxHeldBytesTotal: 1000000, maxHelloBytes: 16384, maxRequestHeadBytes: 8192,
  });
  t.same(c.timeouts, { synS: 5, establishedS: 600, closingS: 2.5, inspectingS: 10 });
  t.equal(c.logFormat, 'pretty');
  t.same(c.decide, { kind: 'module', path: join(dir, 'policy.mjs') });
  const [r, s] = c.rules;
  t.match(r, {
    name: 'everything', action: 'block',
    domains: ['blocked.test', '=exact.test', 'xn--bcher-kva.example'],
    clients: ['10.0.0.0/8', '2001:db8::/32', '192.0.2.1/32'],
    ports: [{ from: 443, to: 443 }, { from: 8000, to: 8100 }],
    app: ['tls', 'http'], methods: ['GET', 'POST'], paths: ['/admin/**'], alpn: ['h2', 'http/1.1'],
    ja4: ['t13d1516h2_8daaf6152771_e5627efa2ab1'], ech: false, named: true, line: 28,
  });
  t.equal(r!.lists![0]!.path, join(dir, 'list.txt'));
  t.ok(r!.lists![0]!.set.match('www.listed.test'));
  t.match(s, { name: 'single-values', action: 'allow', app: ['unknown'], ports: [{ from: 22, to: 22 }],
    domains: null, lists: null, clients: null, methods: null, paths: null, alpn: null, ja4: null, ech: null, named: null });
});

t.test('queue, webhook defaults, shorthand and off switches', async (t) => {
  t.same(parse('queue: 7').config?.queues, { first: 7, last: 7 });
  const hook = parse('decide:\n  webhook: {url: "http://127.0.0.1:9099/decide"}\nmetrics: "localhost:9000"\ncontrol: false\n').config!;
  t.same(hook.decide, {
    kind: 'webhook', url: 'http://127.0.0.1:9099/decide', timeoutMs: 500, cacheTtlS: 60, errorCacheTtlS: 5,
    maxSockets: 16, maxCacheEntries: 100000, cacheByClient: false,
  });
  t.same(hook.metrics, { host: 'localhost', port: 9000 });
  t.equal(hook.control, null);
  const short = parse('decide: {webhook: "https://policy.internal/ask"}\n').config!;
  t.match(short.decide, { kind: 'webhook', url: 'https://policy.internal/ask', timeoutMs: 500 });
  const full = parse('decide:\n  webhook:\n    url: http://127.0.0.1:1/\n    timeout_ms: 50\n    cache_ttl_s: 0\n' +
    '    error_cache_ttl_s: 0.5\n    max_sockets: 2\n    max_cache_entries: 10\n    cache_by_client: true\n').config!;
  t.same(full.decide, { kind: 'webhook', url: 'http://127.0.0.1:1/', timeoutMs: 50, cacheTtlS: 0, errorCacheTtlS: 0.5,
    maxSockets: 2, maxCacheEntries: 10, cacheByClient: true });
  t.equal(parse('metrics: null').config?.metrics, null);
});

t.test('each kind of error, at the offending node', async (t) => {
  const cases: [string, string[], Record<string, string>?][] = [
    ['defualt: allow', ['FILE:1:1: unknown key "defualt"; did you mean "default"?']],
    ['frobnicate: 1', ['FILE:1:1: unknown key "frobnicate"']],
    ['default: alow', ['FILE:1:10: "default" must be allow or block, not "alow"']],
    ['default: [allow]', ['FILE:1:10: "default" must be allow or block, not a list']],
    ['block_action: reject', ['FILE:1:15: "block_action" must be one of reset, drop, page, not "reject"']],
    ['tls_alert: yes', ['FILE:1:12: "tls_alert" must be true or false, not "yes"']],
    ['handshake_log: 1', ['FILE:1:16: "handshake_log" must be true or false, not 1']],
    ['queue: 70000', ['FILE:1:8: "queue" must be an integer from 0 to 65535, not 70000']],
    ['queue: "1"', ['FILE:1:8: "queue" must be an integer from 0 to 65535, not "1"']],
    ['decision_timeout_ms: 1.5', ['FILE:1:22: "decision_timeout_ms" must be an integer from 1 to 3600000 ms, not 1.5']],
    ['decision_timeout_ms:', ['FILE:1:1: "decision_timeout_ms" must be an integer from 1 to 3600000 ms, not nothing']],
    ['queue: 1\nqueues: "0:3"', ['FILE:2:1: "queue" and "queues" exclude each other; use one']],
    ['queues: "3:1"', ['FILE:1:9: "queues" must be "A:B" with queue numbers 0 <= A <= B <= 65535, like "0:3"']],
    ['metrics: 9475', ['FILE:1:10: "metrics" must be "ADDRESS:PORT" with an IP address or localhost, like "127.0.0.1:9475" or "[::1]:9475"']],
    ['metrics: "[::]:9475"', ['FILE:1:10: "metrics" must name a loopback or specific address, not the wildcard ::']],
    ['timeouts: {syn_s: 0}', ['FILE:1:19: "syn_s" must be a number from 0.001 to 31536000 s, not 0']],
    ['limits:\n  max_flow: 5', ['FILE:2:3: unknown key "max_flow"; did you mean "max_flows"?']],
    ['limits: 5', ['FILE:1:9: "limits" must be a mapping of keys to values']],
    ['marks: {allow: 0x200}', ['FILE:1:16: the allow mark 0x200 is the same as the block mark (default)']],
    ['marks: {inspect: 0x400}', ['FILE:1:18: the inspect mark 0x400 has bits outside the mask 0x300']],
    ['marks: {allow: 0x100, block: 0x100}', ['FILE:1:30: the block mark 0x100 is the same as the allow mark']],
    ['marks: {inspect: 0x100}', ['FILE:1:18: the inspect mark 0x100 is the same as the allow mark (default)']],
    ['marks: {block: 0}', ['FILE:1:16: the block mark must not be 0']],
    ['marks: {answer: 0x100}', ['FILE:1:17: the answer mark 0x100 overlaps the mask 0x300: it must be bits of its own (0 turns it off)']],
    ['marks: {mask: "ff"}', ['FILE:1:15: "mask" must be a 32-bit mark, a number or hex string like 0x100']],
    ['rules: {name: x}', ['FILE:1:8: "rules" must be a list of rules']],
    ['rules:\n  - action: block', ['FILE:2:5: rule is missing "name"']],
    ['rules:\n  - name: r', ['FILE:2:5: rule "r" is missing "action" (allow or block)']],
    ['rules:\n  - name: "a b"\n    action: allow', ['FILE:2:11: rule name "a b" must be 1-64 letters, digits, "_", ".", ":" or "-", starting with a letter or digit']],
    ['rules:\n  - {name: r, action: allow}\n  - {name: r, action: block}', ['FILE:3:12: duplicate rule name "r" (first used on line 2)']],
    ['rules:\n  - name: r\n    action: allow\n    domain: [x.test]', ['FILE:4:5: unknown key "domain"; did you mean "domains"?']],
    ['rules:\n  - name: r\n    action: allow\n    domains: [good.test, "bad..test"]', ['FILE:4:26: bad domain "bad..test": malformed label ""']],
    ['rules:\n  - name: r\n    action: allow\n    domains: []', ['FILE:4:14: "domains" must not be empty (leave the key out instead)']],
    ['rules:\n  - name: r\n    action: allow\n    domains: [[a.test]]', ['FILE:4:15: items of "domains" must be single values, not a list']],
    ['rules:\n  - name: r\n    action: allow\n    clients: [10.0.0.0/33]', ['FILE:4:15: bad address or CIDR "10.0.0.0/33": prefix length must be 0-32']],
    ['rules:\n  - name: r\n    action: allow\n    clients: ["fd00::1/64"]', ['FILE:4:15: bad address or CIDR "fd00::1/64": host bits are set; did you mean fd00::/64?']],
    ['rules:\n  - name: r\n    action: allow\n    ports: [443, 65536]', ['FILE:4:18: bad port 65536: ports are 1-65535, or ranges like 8000-8999']],
    ['rules:\n  - name: r\n    action: allow\n    ports: ["90-80"]', ['FILE:4:13: bad port "90-80": ports are 1-65535, or ranges like 8000-8999']],
    ['rules:\n  - name: r\n    action: allow\n    app: [tls, quic]', ['FILE:4:16: "app" must be tls, http or unknown, not "quic"']],
    ['rules:\n  - name: r\n    action: allow\n    methods: ["GE T"]', ['FILE:4:15: bad method "GE T": not an HTTP method token']],
    ['rules:\n  - name: r\n    action: allow\n    paths: ["/x/a**"]', ['FILE:4:13: bad glob "/x/a**": "**" must be a whole path segment, like /a/**/b']],
    ['rules:\n  - name: r\n    action: allow\n    ja4: [abc]', ['FILE:4:11: bad JA4 fingerprint "abc": expected like t13d1516h2_8daaf6152771_e5627efa2ab1']],
    ['rules:\n  - name: r\n    action: allow\n    ech: 1', ['FILE:4:10: "ech" must be true or false, not 1']],
    ['rules:\n  - name: r\n    action: allow\n    lists: [missing.txt]', [`FILE:4:13: cannot read list file "DIR/missing.txt": ENOENT: no such file or directory, open '${dir}/missing.txt'`]],
    ['rules:\n  - name: r\n    action: allow\n    lists: [broken.txt]', ['DIR/broken.txt:3:9: bad domain "bad_-": malformed label "bad_-"'],
      { 'broken.txt': 'fine.test\n# comment\n0.0.0.0 bad_- fine2.test\n' }],
    ['decide: {webhook: {url: "ftp://x/"}}', ['FILE:1:25: bad webhook URL "ftp://x/": expected http://HOST:PORT/PATH or https://...']],
    ['decide: {webhook: {timeout_ms: 5}}', ['FILE:1:19: "webhook" is missing "url"']],
    ['decide: {webhook: {url: "http://x/", timeout: 5}}', ['FILE:1:38: unknown key "timeout"; did you mean "timeout_ms"?']],
    ['decide: {module: nope.mjs}', [`FILE:1:18: cannot read module file "DIR/nope.mjs": ENOENT: no such file or directory, stat '${dir}/nope.mjs'`]],
    ['decide: {module: x.mjs, webhook: "http://x/"}', ['FILE:1:10: "decide" takes one of "webhook" or "module", not both']],
    ['decide: {}', ['FILE:1:9: "decide" needs "webhook" or "module"']],
    ['- just\n- a list', ['FILE:1:1: the config must be a mapping of keys to values']],
  ];
  for (const [yaml, want, files] of cases) t.same(errors(yaml, files), want, yaml);
});

t.test('a mask of one\'s own: no answer bit unless named', async (t) => {
  t.same(parse('marks: {mask: 0xf00, allow: 0x100, block: 0x200, inspect: 0x300}').config!.marks,
    { mask: 0xf00, allow: 0x100, block: 0x200, inspect: 0x300, answer: 0 }, 'a mask that takes its bit');
  t.same(parse('marks: {mask: 0x30000, allow: 0x10000, block: 0x20000, inspect: 0x30000}').config!.marks.answer, 0,
    'a mask elsewhere: other rules use marks, and may use 0x400');
  t.same(parse('marks: {mask: 0x30000, allow: 0x10000, block: 0x20000, inspect: 0x30000, answer: 0x40000}').config!.marks.answer, 0x40000, 'named');
  t.same(parse('marks: {answer: 0x800}').config!.marks.answer, 0x800, 'another bit');
  t.same(parse('marks: {answer: 0}').config!.marks.answer, 0, 'off');
});

t.test('YAML syntax errors', async (t) => {
  t.same(errors('default: [allow\nqueue: 1\n'), ['FILE:2:1: Flow sequence in block collection must be sufficiently indented and end with a ]']);
  t.same(errors('default: allow\ndefault: block\n'), ['FILE:2:1: Map keys must be unique']);
  t.same(errors('rules:\n\t- name: x\n'), ['FILE:2:1: Tabs are not allowed as indentation']);
  t.match(errors('a: 1\n---\nb: 2\n'), [/^FILE:2:1: /]);
  t.same(errors('x: &a 1\ndefault: *a'), ['FILE:1:1: unknown key "x"', 'FILE:2:10: "default" must be allow or block, not 1']);
});

t.test('all errors of a file at once, in file order', async (t) => {
  t.same(errors(`
default: alow
queu: 1
rules:
  - name: one
    action: blok
    domains: [ok.test, "-bad.test"]
    lists: [l1.txt]
  - name: two
    action: allow
    ports: [0]
log_format: xml
`, { 'l1.txt': 'x..y\n' }), [
    'FILE:2:10: "default" must be allow or block, not "alow"',
    'FILE:3:1: unknown key "queu"; did you mean "queue"?',
    'FILE:6:13: "action" must be allow or block, not "blok"',
    'FILE:7:24: bad domain "-bad.test": malformed label "-bad"',
    'FILE:11:13: bad port 0: ports are 1-65535, or ranges like 8000-8999',
    'FILE:12:13: "log_format" must be json or pretty, not "xml"',
    'DIR/l1.txt:1:1: bad domain "x..y": malformed label ""',
  ]);
});

t.test('loadConfig and checkConfigFile', async (t) => {
  const good = parse('default: block\n').file;
  t.equal((await loadConfig(good)).default, 'block');
  t.same(await checkConfigFile(good), []);
  const bad = parse('default: nope\nqueue: -1\n').file;
  const err = await loadConfig(bad).catch((e: unknown) => e);
  t.ok(err instanceof ConfigLoadError);
  t.equal((err as ConfigLoadError).code, 'ERR_CONFIG');
  t.equal((err as ConfigLoadError).message, `${bad}:1:10: "default" must be allow or block, not "nope"\n` +
    `${bad}:2:8: "queue" must be an integer from 0 to 65535, not -1`);
  t.same((await checkConfigFile(bad)).map((e) => [e.file, e.line, e.col]), [[bad, 1, 10], [bad, 2, 8]]);
  const missing = join(dir, 'absent.yaml');
  t.match((await checkConfigFile(missing)).map((e) => e.message), [new RegExp(`^${missing}:1:1: cannot read config file: ENOENT`)]);
});

t.test('the example configs are valid', async (t) => {
  // The repository root: the first folder up with a package.json (tests also run from dist/).
  let root = fileURLToPath(new URL('.', import.meta.url));
  while (!existsSync(join(root, 'package.json'))) root = dirname(root);
  const examples = join(root, 'examples/config');
  const files = readdirSync(examples).filter((f) => f.endsWith('.yaml'));
  t.ok(files.includes('gateway.yaml'));
  for (const name of files) t.same((await checkConfigFile(join(examples, name))).map((e) => e.message), [], name);
  const gateway = await loadConfig(join(examples, 'gateway.yaml'));
  t.ok(gateway.rules.some((r) => r.domains?.includes('blocked.test')));
});
