/**
 * Origin servers inside the server namespace: the Node test server (fixtures/server.mjs),
 * which reports every connection and request, and nginx for benchmarks.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureCerts } from './certs.js';
import { fixturePath } from './fixtures.js';
import { HarnessError, requireBinary, type ProcessHandle } from './proc.js';
import type { Topology } from './topology.js';

/** Options for startServers(). */
export interface ServerOptions {
  /** Plain HTTP port; default 80. */
  httpPort?: number;
  /** HTTPS port; default 443. */
  httpsPort?: number;
  /** Milliseconds to wait for both listeners; default 10000. */
  readyTimeoutMs?: number;
}

/** Something the test server reported, one per stdout line. */
export interface ServerEvent {
  type: 'ready' | 'connection' | 'request' | 'tlsError' | 'clientError';
  /** Server clock, ms since the epoch. */
  ts: number;
  /** True for the HTTPS listener. */
  tls?: boolean;
  remote?: string;
  remotePort?: number;
  message?: string;
  code?: string | null;
  [key: string]: unknown;
}

/** An HTTP request the test server answered (type 'request'). */
export interface ServerRequest extends ServerEvent {
  type: 'request';
  tls: boolean;
  method: string;
  path: string;
  /** Host header without port (or the SNI when there was no Host header). */
  host: string;
  /** TLS server name the client sent, null for none or plain HTTP. */
  servername: string | null;
  /** Negotiated ALPN protocol, null for none or plain HTTP. */
  alpn: string | null;
  httpVersion: string;
  headers: Record<string, string | string[]>;
}

/** The running test server. */
export interface TestServers {
  /** Plain HTTP port. */
  httpPort: number;
  /** HTTPS port. */
  httpsPort: number;
  /** CA certificate that signed the server certificate. */
  caCert: string;
  /** The child process (`node server.mjs` in the server namespace). */
  process: ProcessHandle;
  /** Every event so far, in order. */
  readonly events: ServerEvent[];
  /** The requests so far, optionally only those for one host. */
  requests(host?: string): ServerRequest[];
  /** Resolves with the first request (past or future) matching `pred`; rejects after timeoutMs (default 5000). */
  waitForRequest(pred: (r: ServerRequest) => boolean, timeoutMs?: number): Promise<ServerRequest>;
  /** Stops the server. */
  stop(): Promise<void>;
}

/**
 * Starts the Node HTTP + HTTPS test server in the server namespace (listening on all
 * addresses, v4 and v6). It answers `GET /` with `hello from <host>\n` for any host and
 * supports keep-alive; also `/slow?ms=N` and `/bytes?n=N`. Destroying the topology stops it.
 */
export async function startServers(topo: Topology, opts: ServerOptions = {}): Promise<TestServers> {
  const certs = await ensureCerts();
  const httpPort = opts.httpPort ?? 80;
  const httpsPort = opts.httpsPort ?? 443;
  const proc = topo.spawn('server', [
    process.execPath, fixturePath('server.mjs'),
    '--http-port', String(httpPort), '--https-port', String(httpsPort),
    '--cert', certs.cert, '--key', certs.key,
  ]);
  const events: ServerEvent[] = [];
  proc.on('line', (line: string, stream: string) => {
    if (stream !== 'stdout' || !line.startsWith('{')) return;
    try {
      const ev = JSON.parse(line) as ServerEvent;
      events.push(ev);
      proc.emit('event', ev);
    } catch {
      // not an event line
    }
  });
  await proc.waitForLine((l) => l.includes('"type":"ready"'), { timeoutMs: opts.readyTimeoutMs ?? 10_000 });
  const isRequest = (e: ServerEvent): e is ServerRequest => e.type === 'request';
  return {
    httpPort,
    httpsPort,
    caCert: certs.caCert,
    process: proc,
    events,
    requests: (host?: string) => events.filter(isRequest).filter((r) => host === undefined || r.host === host),
    waitForRequest(pred, timeoutMs = 5000) {
      const seen = events.filter(isRequest).find(pred);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const onEvent = (ev: ServerEvent) => {
          if (!isRequest(ev) || !pred(ev)) return;
          clearTimeout(timer);
          proc.off('event', onEvent);
          resolve(ev);
        };
        const timer = setTimeout(() => {
          proc.off('event', onEvent);
          reject(new HarnessError(`e2e: the test server saw no matching request within ${timeoutMs} ms`));
        }, timeoutMs);
        proc.on('event', onEvent);
      });
    },
    async stop() {
      await proc.kill('SIGTERM', 2000);
    },
  };
}

/** Options for startNginx(). */
export interface NginxOptions {
  /** Plain HTTP port; default 80 (do not run together with startServers() on the same ports). */
  httpPort?: number;
  /** HTTPS port; default 443. */
  httpsPort?: number;
  /** Worker processes; default 2. */
  workers?: number;
  /** More ports the same server also listens on (benchmarks: a path that skips the queue). */
  alsoPorts?: { http: number; https: number };
  /** `ssl_ecdh_curve`, e.g. 'X25519': a TLS 1.3 client whose key share is for another group gets a HelloRetryRequest. */
  ecdhCurve?: string;
  /** `ssl_protocols`; Debian 12's nginx (1.22) offers TLS 1.0-1.2 unless told, e.g. 'TLSv1.2 TLSv1.3'. */
  sslProtocols?: string;
}

/** A running nginx. */
export interface NginxServer {
  httpPort: number;
  httpsPort: number;
  /** The nginx master process (`daemon off`). */
  process: ProcessHandle;
  /** Directory with nginx.conf, logs and temp paths. */
  prefix: string;
  /** Stops nginx. */
  stop(): Promise<void>;
}

/**
 * Starts nginx in the server namespace with a generated config: the same answers as the
 * test server for `/` (`hello from $host\n`), on HTTP and HTTPS, v4 and v6, keep-alive on.
 */
export async function startNginx(topo: Topology, opts: NginxOptions = {}): Promise<NginxServer> {
  const nginx = requireBinary('nginx');
  const certs = await ensureCerts();
  const httpPort = opts.httpPort ?? 80;
  const httpsPort = opts.httpsPort ?? 443;
  const prefix = join(topo.tmpDir, `nginx-${httpPort}`);
  mkdirSync(join(prefix, 'tmp'), { recursive: true });
  const conf = `
user root;
worker_processes ${opts.workers ?? 2};
daemon off;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path ${prefix}/tmp/body;
  proxy_temp_path ${prefix}/tmp/proxy;
  fastcgi_temp_path ${prefix}/tmp/fastcgi;
  uwsgi_temp_path ${prefix}/tmp/uwsgi;
  scgi_temp_path ${prefix}/tmp/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  ssl_certificate ${certs.cert};
  ssl_certificate_key ${certs.key};${opts.ecdhCurve === undefined ? '' : `
  ssl_ecdh_curve ${opts.ecdhCurve};`}${opts.sslProtocols === undefined ? '' : `
  ssl_protocols ${opts.sslProtocols};`}
  server {
    listen ${httpPort} default_server;
    listen [::]:${httpPort} default_server;
    listen ${httpsPort} ssl default_server;
    listen [::]:${httpsPort} ssl default_server;${opts.alsoPorts === undefined ? '' : `
    listen ${opts.alsoPorts.http} default_server;
    listen ${opts.alsoPorts.https} ssl default_server;`}
    server_name _;
    location / { default_type text/plain; return 200 "hello from $host\\n"; }
  }
}
`;
  writeFileSync(join(prefix, 'nginx.conf'), conf);
  const proc = topo.spawn('server', [nginx, '-p', prefix, '-e', join(prefix, 'error.log'), '-c', join(prefix, 'nginx.conf')]);
  const curl = requireBinary('curl');
  const deadline = Date.now() + 10_000;
  for (;;) {
    const probe = await topo.exec('server', [curl, '-s', '-o', '/dev/null', '--max-time', '1', `http://127.0.0.1:${httpPort}/`]);
    if (probe.code === 0) break;
    if (!proc.running || Date.now() > deadline) {
      await proc.kill('SIGKILL');
      throw new HarnessError(`e2e: nginx did not start: ${proc.tail()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { httpPort, httpsPort, process: proc, prefix, stop: async () => void (await proc.kill('SIGQUIT', 3000)) };
}
