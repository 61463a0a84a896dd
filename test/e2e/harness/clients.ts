/**
 * Command-line clients run inside the client namespace: curl and `openssl s_client`, each
 * returning a structured result with timing and a classified error.
 */
import net from 'node:net';
import { spawn } from 'node:child_process';
import { ensureCerts } from './certs.js';
import { requireBinary } from './proc.js';
import type { Topology } from './topology.js';

/** How a client attempt ended. */
export type ErrorKind =
  | 'none' // success at the transport level (any HTTP status)
  | 'reset' // the connection was reset (RST) after it was established
  | 'timeout' // no answer within the time limit
  | 'refused' // the connection attempt was refused (RST to the SYN) or unreachable
  | 'empty' // the server closed the connection without answering
  | 'tls' // TLS failure other than a reset: alert, bad certificate, protocol error
  | 'other';

/** Options for curl(). */
export interface CurlOptions {
  /** URL to fetch, with the name that should go in SNI and Host (e.g. https://allowed.test/). */
  url: string;
  /**
   * Name -> address map given to curl as `--resolve`, so the name still goes in SNI/Host.
   * Default: the URL's host -> the server's address in the chosen family.
   */
  resolve?: Record<string, string>;
  /** Use IPv6 (server fd00:X:2::2); default false. */
  ipv6?: boolean;
  /** Force HTTP/1.1 (`--http1.1`); default false (curl's choice). */
  http11?: boolean;
  /** Skip certificate verification (`-k`); default false (verify against the harness CA). */
  insecure?: boolean;
  /** CA file for verification; default the harness CA. */
  cacert?: string;
  /** Overall limit in milliseconds (`--max-time`); default 10000. */
  maxTimeMs?: number;
  /** Connect limit in milliseconds (`--connect-timeout`); default none. */
  connectTimeoutMs?: number;
  /** Extra request headers, e.g. `['Host: blocked.test']`. */
  headers?: string[];
  /** Further curl arguments, inserted before the URL. */
  extraArgs?: string[];
}

/** What curl() observed. */
export interface CurlResult {
  /** curl's exit code (0 success, 7 refused, 28 timeout, 35 TLS, 52 empty, 56 recv failure...). */
  exitCode: number;
  /** HTTP status, 0 when no response was received. */
  httpCode: number;
  /** Response body as text. */
  body: string;
  /** curl's own total time in milliseconds (`time_total`). */
  timeMs: number;
  /** Wall-clock milliseconds including process start. */
  wallMs: number;
  /** Classification of the exit code and message. */
  errorKind: ErrorKind;
  /** curl's error message, '' on success. */
  errorMessage: string;
  /** curl's stderr. */
  stderr: string;
}

const WRITE_OUT_MARK = '\n@@flowgate-e2e@@';

/** Classifies a curl exit code and error message. */
export function curlErrorKind(exitCode: number, message: string): ErrorKind {
  if (exitCode === 0) return 'none';
  if (/reset by peer|connection reset|ECONNRESET/i.test(message)) return 'reset';
  switch (exitCode) {
    case 7:
      return 'refused';
    case 28:
      return 'timeout';
    case 52:
      return 'empty';
    case 35:
    case 51:
    case 58:
    case 59:
    case 60:
    case 77:
    case 80:
    case 83:
    case 90:
    case 91:
      return 'tls';
    default:
      return 'other';
  }
}

/** Fetches a URL with curl from the client namespace. Never throws for network failures. */
export async function curl(topo: Topology, opts: CurlOptions): Promise<CurlResult> {
  const curlBin = requireBinary('curl');
  const url = new URL(opts.url);
  const family = opts.ipv6 ? 6 : 4;
  const port = url.port !== '' ? Number(url.port) : url.protocol === 'https:' ? 443 : 80;
  const hostname = url.hostname.replace(/^\[|\]$/g, '');
  const isLiteral = /^[\d.]+$/.test(hostname) || hostname.includes(':');
  const resolve = opts.resolve ?? (isLiteral ? {} : { [hostname]: topo.addrs(family).server });
  const maxTimeMs = opts.maxTimeMs ?? 10_000;
  const argv = [curlBin, '-sS', '--max-time', String(maxTimeMs / 1000), family === 6 ? '-6' : '-4'];
  if (opts.connectTimeoutMs !== undefined) argv.push('--connect-timeout', String(opts.connectTimeoutMs / 1000));
  if (opts.http11) argv.push('--http1.1');
  if (url.protocol === 'https:') {
    if (opts.insecure) argv.push('-k');
    else argv.push('--cacert', opts.cacert ?? (await ensureCerts()).caCert);
  }
  for (const [name, addr] of Object.entries(resolve)) {
    argv.push('--resolve', `${name}:${port}:${addr.includes(':') ? `[${addr}]` : addr}`);
  }
  for (const h of opts.headers ?? []) argv.push('-H', h);
  argv.push(...(opts.extraArgs ?? []), '-w', `${WRITE_OUT_MARK}%{json}`, opts.url);
  const res = await topo.exec('client', argv, { timeoutMs: maxTimeMs + 5000 });
  const mark = res.stdoutBuf.lastIndexOf(WRITE_OUT_MARK);
  const body = mark >= 0 ? res.stdoutBuf.subarray(0, mark).toString('utf8') : res.stdout;
  let info: { http_code?: number; time_total?: number; errormsg?: string | null } = {};
  if (mark >= 0) {
    try {
      info = JSON.parse(res.stdoutBuf.subarray(mark + WRITE_OUT_MARK.length).toString('utf8'));
    } catch {
      // leave info empty; exit code still classifies
    }
  }
  const exitCode = res.code ?? -1;
  const errorMessage = exitCode === 0 ? '' : info.errormsg ?? res.stderr.trim();
  return {
    exitCode,
    httpCode: Number(info.http_code ?? 0),
    body,
    timeMs: info.time_total !== undefined ? info.time_total * 1000 : res.timeMs,
    wallMs: res.timeMs,
    errorKind: res.timedOut ? 'timeout' : curlErrorKind(exitCode, `${errorMessage} ${res.stderr}`),
    errorMessage,
    stderr: res.stderr,
  };
}

/** Options for opensslClient(). */
export interface OpensslOptions {
  /** Address to connect to; default the server's address in the chosen family. */
  ip?: string;
  /** Port; default 443. */
  port?: number;
  /** Use the server's IPv6 address when `ip` is not given; default false. */
  ipv6?: boolean;
  /** SNI to send; default 'allowed.test'; null sends no SNI (`-noservername`). */
  servername?: string | null;
  /** ALPN protocols to offer, e.g. ['h2', 'http/1.1']. */
  alpn?: string[];
  /** CA file for verification; default the harness CA. */
  caFile?: string;
  /** Data to send after the handshake (e.g. an HTTP request); output then runs until the server closes. */
  send?: string;
  /** Kill s_client after this many milliseconds; default 10000. */
  timeoutMs?: number;
  /** Further s_client arguments (e.g. ['-tls1_2']). */
  extraArgs?: string[];
}

/** What opensslClient() observed. */
export interface OpensslResult {
  /** The TCP connection was established (s_client printed CONNECTED). */
  tcpConnected: boolean;
  /** The TLS handshake completed. */
  connected: boolean;
  /** Certificate verification result, undefined when no handshake happened. */
  verified?: boolean;
  /** Negotiated protocol version, e.g. 'TLSv1.3'. */
  protocol?: string;
  /** Negotiated ALPN protocol. */
  alpn?: string;
  /** The connection was reset (ECONNRESET seen). */
  reset: boolean;
  /** s_client was killed by the time limit. */
  timedOut: boolean;
  exitCode: number | null;
  /** Wall-clock milliseconds. */
  timeMs: number;
  /** stdout and stderr together. */
  output: string;
}

/** Runs `openssl s_client` from the client namespace. Never throws for network failures. */
export async function opensslClient(topo: Topology, opts: OpensslOptions = {}): Promise<OpensslResult> {
  const openssl = requireBinary('openssl');
  const ip = opts.ip ?? topo.addrs(opts.ipv6 ? 6 : 4).server;
  const port = opts.port ?? 443;
  const argv = [openssl, 's_client', '-connect', `${ip.includes(':') ? `[${ip}]` : ip}:${port}`];
  const servername = opts.servername === undefined ? 'allowed.test' : opts.servername;
  if (servername === null) argv.push('-noservername');
  else argv.push('-servername', servername);
  if (opts.alpn) argv.push('-alpn', opts.alpn.join(','));
  argv.push('-CAfile', opts.caFile ?? (await ensureCerts()).caCert);
  if (opts.send !== undefined) argv.push('-ign_eof');
  argv.push(...(opts.extraArgs ?? []));
  const res = await topo.exec('client', argv, { input: opts.send ?? '', timeoutMs: opts.timeoutMs ?? 10_000 });
  const output = `${res.stdout}\n${res.stderr}`;
  const protocol = /^\s*Protocol\s*:\s*(\S+)/m.exec(output)?.[1];
  const handshake = /^(New|Reused), (TLSv[\d.]+|SSLv\d)/m.exec(output);
  const connected = handshake !== null && !/Cipher is \(NONE\)/.test(output);
  const verify = /Verify return code: (\d+)/.exec(output);
  const alpn = /^ALPN protocol: (\S+)/m.exec(output)?.[1];
  return {
    tcpConnected: /^CONNECTED\(/m.test(output),
    connected,
    verified: connected && verify ? verify[1] === '0' : undefined,
    protocol: connected ? protocol ?? handshake?.[2] : undefined,
    alpn,
    reset: /errno=104\b|Connection reset by peer|ECONNRESET/i.test(output),
    timedOut: res.timedOut,
    exitCode: res.code,
    timeMs: res.timeMs,
    output,
  };
}

/** The ClientHello record `openssl s_client -servername NAME` sends, recorded on a local socket. */
export async function recordOpensslHello(servername: string, extraArgs: string[] = []): Promise<Buffer> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const got = new Promise<Buffer>((resolve) => server.once('connection', (sock) => {
    const parts: Buffer[] = [];
    sock.on('data', (d: Buffer) => {
      parts.push(d);
      const all = Buffer.concat(parts);
      if (all.length >= 5 && all.length >= 5 + all.readUInt16BE(3)) {
        sock.destroy();
        resolve(all.subarray(0, 5 + all.readUInt16BE(3)));
      }
    });
  }));
  const child = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', servername, ...extraArgs],
    { stdio: ['pipe', 'ignore', 'ignore'] });
  const hello = await got;
  child.kill();
  server.close();
  return hello;
}
