/**
 * Headless Chromium in the client namespace: loads one URL with names mapped to the test
 * server by --host-resolver-rules, and returns the dumped DOM or the network error.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { requireBinary } from './proc.js';
import type { Topology } from './topology.js';

/**
 * Flags from PLATFORM.md for a scriptable, quiet, TCP-only Chromium (QUIC off), plus
 * --disable-dev-shm-usage for CI containers with a small /dev/shm.
 */
export const CHROMIUM_FLAGS: readonly string[] = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--ignore-certificate-errors',
  '--disable-dev-shm-usage',
];

/** Options for chromium(). */
export interface ChromiumOptions {
  /** URL to load, e.g. https://allowed.test/. */
  url: string;
  /**
   * Name -> address rules for `--host-resolver-rules` (`MAP name addr`). Default: the URL's
   * host -> the server's address in the chosen family.
   */
  mapHost?: Record<string, string>;
  /** Use the server's IPv6 address in the default mapping; default false. */
  ipv6?: boolean;
  /** Kill Chromium after this many milliseconds; default 20000. */
  timeoutMs?: number;
  /** Further Chromium arguments. */
  extraArgs?: string[];
}

/** What chromium() observed. */
export interface ChromiumResult {
  /** Exit code, null when killed. */
  exitCode: number | null;
  /** Chromium was killed by the time limit. */
  timedOut: boolean;
  /** The serialized DOM (`--dump-dom`), '' when the load failed. */
  dom: string;
  /** Network error of a failed load, e.g. 'ERR_CONNECTION_RESET'; undefined on success. */
  netError?: string;
  /** Wall-clock milliseconds, start to exit. */
  timeMs: number;
  /** stderr without the D-Bus noise. */
  stderr: string;
}

/**
 * Loads `url` with a fresh profile (`--user-data-dir` in the topology's temp directory) and
 * `--dump-dom`. Needs Debian `chromium`; takes about 2 s per load on the project machines.
 */
export async function chromium(topo: Topology, opts: ChromiumOptions): Promise<ChromiumResult> {
  const bin = requireBinary('chromium');
  const url = new URL(opts.url);
  const server = topo.addrs(opts.ipv6 ? 6 : 4).server;
  const map = opts.mapHost ?? { [url.hostname]: server };
  const rules = Object.entries(map)
    .map(([name, addr]) => `MAP ${name} ${addr.includes(':') ? `[${addr}]` : addr}`)
    .join(', ');
  const profile = mkdtempSync(join(topo.tmpDir, 'chromium-'));
  const argv = [
    bin,
    ...CHROMIUM_FLAGS,
    `--user-data-dir=${profile}`,
    `--host-resolver-rules=${rules}`,
    ...(opts.extraArgs ?? []),
    '--dump-dom',
    opts.url,
  ];
  const timeoutMs = opts.timeoutMs ?? 20_000;
  const proc = topo.spawn('client', argv);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    proc.signalGroup('SIGKILL');
  }, timeoutMs);
  const started = performance.now();
  const exit = await proc.exited;
  clearTimeout(timer);
  // children (renderer, network service) share the process group; make sure none linger
  proc.signalGroup('SIGKILL');
  rmSync(profile, { recursive: true, force: true });
  const stderr = proc.stderr
    .split('\n')
    .filter((l) => !/dbus|unexpected operator/i.test(l))
    .join('\n');
  return {
    exitCode: exit.code,
    timedOut,
    dom: proc.stdout,
    netError: /net::(ERR_[A-Z0-9_]+)/.exec(stderr)?.[1],
    timeMs: performance.now() - started,
    stderr,
  };
}
