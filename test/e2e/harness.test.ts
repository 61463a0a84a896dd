// Self-tests of the end-to-end harness (test/e2e/harness/): no flowgate daemon involved.
// Needs root and the Debian packages iproute2 iptables ethtool curl openssl chromium tshark
// procps; a missing one fails the test with the package name, never skips it.
// Two subtests run Chromium (about 2-3 s each); the whole file takes about 15-25 s.
import { spawn } from 'node:child_process';
import t from 'tap';
import {
  capture,
  checkPrerequisites,
  chromium,
  cleanupStale,
  createTopology,
  curl,
  curlErrorKind,
  execArgv,
  firstFlights,
  iptables,
  iptablesCounters,
  listNamespaces,
  nodeScriptArgv,
  opensslClient,
  parseIptablesSave,
  parseQueueStats,
  rawSegments,
  readQueueStats,
  readTcpSegments,
  requireBinary,
  startNginx,
  startServers,
  tsharkFields,
  type Topology,
} from './harness/index.js';

const ALL_TOOLS = ['ip', 'iptables', 'ip6tables', 'iptables-save', 'ethtool', 'curl', 'openssl', 'chromium', 'nginx', 'dumpcap', 'tshark', 'sysctl'];

t.test('prerequisites: root and every tool the harness uses', async (t) => {
  t.doesNotThrow(() => checkPrerequisites(ALL_TOOLS));
  t.throws(() => requireBinary('fg-no-such-tool'), /apt-get install fg-no-such-tool/);
});

t.test('a topology is created with unique names and destroyed without a trace', async (t) => {
  const topo = await createTopology();
  t.teardown(() => topo.destroy());
  const names = Object.values(topo.ns);
  t.match(topo.ns.gw, new RegExp(`^fg-gw-${process.pid}-[0-9a-f]+$`));
  for (const dev of Object.values(topo.ifaces)) t.ok(dev.length <= 15, `${dev} fits IFNAMSIZ`);
  t.ok(topo.net >= 1 && topo.net <= 250);
  const before = await listNamespaces();
  for (const n of names) t.ok(before.includes(n), `${n} exists`);
  const fwd = await topo.exec('gw', ['cat', '/proc/sys/net/ipv4/ip_forward', '/proc/sys/net/ipv6/conf/all/forwarding']);
  t.equal(fwd.stdout, '1\n1\n', 'gw forwards v4 and v6');
  const routes = await topo.exec('client', ['ip', 'route', 'show', 'default'], { check: true });
  t.match(routes.stdout, `default via ${topo.ip4.gwClient}`);
  const sleeper = topo.spawn('server', ['sleep', '600']);
  await Promise.all([topo.destroy(), topo.destroy()]);
  await topo.destroy();
  t.ok(topo.destroyed);
  t.equal(sleeper.running, false, 'processes it started are gone');
  const after = await listNamespaces();
  for (const n of names) t.notOk(after.includes(n), `${n} removed`);
  t.throws(() => topo.spawn('client', ['true']), /destroyed/);
});

t.test('forwarding path with the test servers (offloads on)', async (t) => {
  const topo = await createTopology();
  t.teardown(() => topo.destroy());
  const srv = await startServers(topo);

  t.test('curl over HTTP', async (t) => {
    const r = await curl(topo, { url: 'http://allowed.test/' });
    t.equal(r.errorKind, 'none', r.errorMessage);
    t.equal(r.httpCode, 200);
    t.equal(r.body, 'hello from allowed.test\n');
    const seen = await srv.waitForRequest((q) => !q.tls && q.host === 'allowed.test');
    t.equal(seen.remote, topo.ip4.client, 'routed through gw, not NATed');
  });

  t.test('curl over HTTPS, verified against the harness CA', async (t) => {
    const r = await curl(topo, { url: 'https://allowed.test/' });
    t.equal(r.errorKind, 'none', r.errorMessage);
    t.equal(r.httpCode, 200);
    t.equal(r.body, 'hello from allowed.test\n');
    const b = await curl(topo, { url: 'https://blocked.test/', http11: true });
    t.equal(b.body, 'hello from blocked.test\n');
    const q = await srv.waitForRequest((q) => q.tls && q.host === 'blocked.test');
    t.equal(q.servername, 'blocked.test');
  });

  t.test('curl over IPv6', async (t) => {
    const r = await curl(topo, { url: 'https://allowed.test/', ipv6: true });
    t.equal(r.errorKind, 'none', r.errorMessage);
    t.equal(r.body, 'hello from allowed.test\n');
    t.ok(r.timeMs < 500, `no SYN retransmission on a fresh topology (${r.timeMs} ms)`);
    const q = await srv.waitForRequest((q) => q.remote === topo.ip6.client);
    t.equal(q.host, 'allowed.test');
  });

  t.test('openssl s_client completes a verified handshake', async (t) => {
    const r = await opensslClient(topo, { servername: 'allowed.test', alpn: ['h2', 'http/1.1'] });
    t.ok(r.tcpConnected);
    t.ok(r.connected, r.output);
    t.equal(r.verified, true);
    t.equal(r.alpn, 'http/1.1');
    t.equal(r.reset, false);
    const v6 = await opensslClient(topo, { ipv6: true, servername: 'blocked.test' });
    t.ok(v6.connected, v6.output);
  });

  t.test('a closed port is refused', async (t) => {
    const r = await curl(topo, { url: 'http://allowed.test:81/' });
    t.equal(r.errorKind, 'refused');
    t.equal(r.exitCode, 7);
  });

  t.test('raw segments: split request gets its answer', async (t) => {
    const r = await rawSegments(topo, {
      chunks: ['GET / HTTP/1.1\r\nHo', 'st: allowed.test\r\n', 'Connection: close\r\n\r\n'],
      delayMs: 10,
    });
    t.equal(r.connected, true);
    t.equal(r.written, 3);
    t.equal(r.error, null);
    t.equal(r.closedBy, 'fin');
    t.match(r.responseText, /^HTTP\/1\.1 200 OK[\s\S]*hello from allowed\.test\n$/);
  });

  t.test('a tcp-reset REJECT in gw is seen as a reset, fast', async (t) => {
    // packets of 200 bytes or more: lets the handshake through, rejects the ClientHello
    const rule = ['FORWARD', '-p', 'tcp', '--dport', '443', '-m', 'length', '--length', '200:65535', '-j', 'REJECT', '--reject-with', 'tcp-reset'];
    await iptables(topo, ['-I', ...rule]);
    await iptables(topo, ['-I', ...rule], { family: 6 });
    t.teardown(async () => {
      await iptables(topo, ['-D', ...rule]);
      await iptables(topo, ['-D', ...rule], { family: 6 });
    });
    const r = await curl(topo, { url: 'https://allowed.test/' });
    t.equal(r.errorKind, 'reset', r.errorMessage);
    t.ok(r.timeMs < 500, `reset seen in ${r.timeMs} ms`);
    const r6 = await curl(topo, { url: 'https://allowed.test/', ipv6: true });
    t.equal(r6.errorKind, 'reset', r6.errorMessage);
    const o = await opensslClient(topo);
    t.equal(o.connected, false);
    t.equal(o.reset, true);
    const raw = await rawSegments(topo, { port: 443, chunks: [Buffer.alloc(300, 0x16)] });
    t.equal(raw.error, 'reset');
    const counters = await iptablesCounters(topo, 'filter', 'FORWARD');
    const reject = counters.rules.find((x) => x.target === 'REJECT');
    t.ok(reject && reject.packets >= 3, 'the rule counted the rejected packets');
  });

  t.test('queue statistics read inside gw (none bound)', async (t) => {
    t.same(await readQueueStats(topo), []);
  });

  t.test('[needs chromium] Chromium fetches https://allowed.test/ through gw', async (t) => {
    const r = await chromium(topo, { url: 'https://allowed.test/' });
    t.equal(r.timedOut, false);
    t.equal(r.netError, undefined, r.stderr);
    t.match(r.dom, 'hello from allowed.test');
    const q = await srv.waitForRequest((q) => q.tls && /Chrome/.test(String(q.headers['user-agent'])));
    t.equal(q.servername, 'allowed.test');
  });
});

t.test('small MSS, offloads off: segment shapes on the wire', async (t) => {
  const topo = await createTopology({ offloads: false, serverAdvMss: 536 });
  t.teardown(() => topo.destroy());
  await startServers(topo);
  const feat = await topo.exec('client', ['ethtool', '-k', topo.ifaces.client], { check: true });
  t.match(feat.stdout, /tcp-segmentation-offload: off/);
  t.match(feat.stdout, /generic-receive-offload: off/);

  t.test('[needs chromium] a Chromium ClientHello reaches the server as >= 3 segments', async (t) => {
    const cap = await capture(topo, 'server', undefined, 'tcp port 443');
    const r = await chromium(topo, { url: 'https://allowed.test/' });
    t.match(r.dom, 'hello from allowed.test', r.stderr);
    const segments = readTcpSegments(await cap.stop());
    const flights = firstFlights(segments, 443);
    t.ok(flights.length >= 1, 'at least one connection');
    for (const f of flights) {
      t.ok(f.segments.length >= 3, `${f.client}: ClientHello in ${f.segments.length} segments`);
      t.ok(f.segments.every((s) => s.payload.length <= 536), 'no segment above the MSS');
      const hello = Buffer.concat(f.segments.map((s) => s.payload));
      t.equal(hello[0], 0x16, 'starts with a handshake record');
      t.equal(hello[5], 0x01, 'ClientHello');
    }
    const sni = await tsharkFields(cap.path, ['tls.handshake.extensions_server_name'], 'tls.handshake.type == 1');
    t.ok(sni.length >= 1 && sni.every((row) => row[0] === 'allowed.test'), 'tshark reassembles the SNI');
  });

  t.test('raw segments: a one-shot drop in gw reverses the order of two chunks', async (t) => {
    const cap = await capture(topo, 'server', undefined, 'tcp port 80');
    const chunks = ['GET / HTTP/1.1\r\n', 'Host: allowed.test\r\n', 'Connection: close\r\n\r\n'];
    const r = await rawSegments(topo, { chunks, dropFirst: [0] });
    t.same(r.dropped, [true]);
    t.match(r.responseText, 'hello from allowed.test');
    const [flight] = firstFlights(readTcpSegments(await cap.stop()), 80);
    const arrived = flight!.segments.map((s) => s.payload.toString());
    t.same(arrived, [chunks[1], chunks[0], chunks[2]], 'the server saw chunk 1 before chunk 0');
    const left = await iptablesCounters(topo, 'raw', 'PREROUTING');
    t.same(left.rules, [], 'the drop rule was removed');
  });

  t.test('nginx serves the same names', async (t) => {
    const nginx = await startNginx(topo, { httpPort: 8080, httpsPort: 8443 });
    const r = await curl(topo, { url: 'https://blocked.test:8443/' });
    t.equal(r.body, 'hello from blocked.test\n', r.errorMessage);
    await nginx.stop();
    t.equal(nginx.process.running, false);
  });
});

t.test('exit and signal handlers remove namespaces; cleanupStale removes orphans', async (t) => {
  const runChild = async (mode: 'exit' | 'signal'): Promise<string[]> => {
    const [node, ...args] = nodeScriptArgv('test/e2e/harness/fixtures/exit-child.ts', [mode]);
    const child = spawn(node!, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const names = await new Promise<string[]>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0]!) as string[]);
      });
      child.on('close', (code) => (out.includes('\n') ? undefined : reject(new Error(`child exited ${code}: ${err}`))));
    });
    if (mode === 'signal') child.kill('SIGTERM');
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    t.ok(mode === 'exit' ? code === 0 : code === null, `child ended (${code})`);
    return names;
  };
  for (const mode of ['exit', 'signal'] as const) {
    const names = await runChild(mode);
    t.equal(names.length, 3);
    const now = await listNamespaces();
    for (const n of names) t.notOk(now.includes(n), `${mode}: ${n} removed by the child`);
  }

  // a namespace named after a dead process is stale
  const dead = spawn('true');
  await new Promise((r) => dead.on('close', r));
  const stale = `fg-gw-${dead.pid}-dead01`;
  await execArgv([requireBinary('ip'), 'netns', 'add', stale], { check: true });
  const mine: Topology = await createTopology();
  t.teardown(() => mine.destroy());
  const removed = await cleanupStale();
  t.ok(removed.includes(stale), 'the orphan was removed');
  const now = await listNamespaces();
  t.notOk(now.includes(stale));
  for (const n of Object.values(mine.ns)) t.ok(now.includes(n), `live ${n} kept`);
});

t.test('parsers and classifiers', async (t) => {
  t.same(parseQueueStats('    0  12345     0 2 65531     0     0       17  1\n'), [
    { queue: 0, portId: 12345, waiting: 0, copyMode: 2, copyRange: 65531, queueDropped: 0, userDropped: 0, lastId: 17 },
  ]);
  const save = [
    '*filter',
    ':FORWARD ACCEPT [5:300]',
    ':FG - [0:0]',
    '[2:120] -A FORWARD -p tcp -j FG',
    '[1:60] -A FG -p tcp -m mark --mark 0x200/0x300 -j REJECT --reject-with tcp-reset',
    'COMMIT',
  ].join('\n');
  t.same(parseIptablesSave(save, 'FORWARD'), {
    policy: { name: 'ACCEPT', packets: 5, bytes: 300 },
    rules: [{ packets: 2, bytes: 120, spec: '-p tcp -j FG', target: 'FG' }],
  });
  t.equal(parseIptablesSave(save, 'FG').policy, undefined);
  t.equal(curlErrorKind(56, 'Recv failure: Connection reset by peer'), 'reset');
  t.equal(curlErrorKind(35, 'OpenSSL SSL_connect: Connection reset by peer in connection to x:443'), 'reset');
  t.equal(curlErrorKind(28, 'Operation timed out'), 'timeout');
  t.equal(curlErrorKind(7, "Couldn't connect to server"), 'refused');
  t.equal(curlErrorKind(52, 'Empty reply from server'), 'empty');
  t.equal(curlErrorKind(60, 'SSL certificate problem'), 'tls');
});
