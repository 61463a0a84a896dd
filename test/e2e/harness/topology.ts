/**
 * The client -- gw -- server sandbox: three network namespaces joined by two veth pairs, with
 * IPv4 and IPv6 addresses, default routes through gw, and forwarding on in gw.
 *
 * Lifecycle:
 *   1. createTopology() builds the namespaces; on any failure it removes what it built.
 *   2. exec()/spawn() run programs inside a namespace; every spawned process is remembered.
 *   3. destroy() (idempotent) kills remembered processes, then every process left in the
 *      namespaces, runs registered cleanups, and deletes the namespaces. It also runs on
 *      process exit, SIGINT and SIGTERM for topologies still alive.
 */
import { randomBytes, randomInt } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  HarnessError,
  ProcessHandle,
  checkPrerequisites,
  execArgv,
  execArgvSync,
  requireBinary,
  type ExecOptions,
  type ExecResult,
  type SpawnOptions,
} from './proc.js';

/** The three namespaces of a topology. */
export type Role = 'client' | 'gw' | 'server';

/** IP family selector used across the harness. */
export type Family = 4 | 6;

/** Options for createTopology(). */
export interface TopologyOptions {
  /**
   * Leave segmentation offloads on (default true). false runs
   * `ethtool -K DEV tso off gso off gro off` on all four veths, so packets on the wire are
   * at most one MSS.
   */
  offloads?: boolean;
  /** MSS (bytes) the server advertises, via `advmss` on its default routes (v4 and v6). */
  serverAdvMss?: number;
  /** The X in 10.X.1.0/24 and fd00:X:1::/64 (1-250); default random. */
  net?: number;
}

/** Addresses of the four interfaces, in one family. */
export interface Addresses {
  /** The client's address (10.X.1.2 / fd00:X:1::2). */
  client: string;
  /** gw on the client side (10.X.1.1 / fd00:X:1::1); the client's default gateway. */
  gwClient: string;
  /** gw on the server side (10.X.2.1 / fd00:X:2::1); the server's default gateway. */
  gwServer: string;
  /** The server's address (10.X.2.2 / fd00:X:2::2). */
  server: string;
}

/** Interface names inside the namespaces (all <= 15 characters). */
export interface Interfaces {
  /** The client's veth (in client). */
  client: string;
  /** gw's veth towards the client. */
  gwClient: string;
  /** gw's veth towards the server. */
  gwServer: string;
  /** The server's veth (in server). */
  server: string;
}

const NAME_PATTERN = /^fg-(client|gw|server)-(\d+)-([0-9a-f]+)$/;
const live = new Set<Topology>();
let handlersInstalled = false;

/** A built sandbox. Create with createTopology(); always destroy() it (t.teardown). */
export class Topology {
  /** Random hex id shared by the namespace and interface names of this run. */
  readonly id: string;
  /** X in the address plan. */
  readonly net: number;
  /** Namespace names per role: `fg-<role>-<pid>-<id>`. */
  readonly ns: Readonly<Record<Role, string>>;
  /** Interface names. */
  readonly ifaces: Readonly<Interfaces>;
  /** IPv4 addresses (no prefix length). */
  readonly ip4: Readonly<Addresses>;
  /** IPv6 addresses (no prefix length). */
  readonly ip6: Readonly<Addresses>;
  /** The options it was built with. */
  readonly options: Readonly<TopologyOptions>;
  private readonly handles = new Set<ProcessHandle>();
  private readonly cleanups: Array<() => void | Promise<void>> = [];
  private destroying: Promise<void> | undefined;
  private tmp: string | undefined;

  /** Use createTopology(); the constructor only fixes names and addresses. */
  constructor(options: TopologyOptions = {}) {
    this.options = { ...options };
    this.id = randomBytes(3).toString('hex');
    this.net = options.net ?? randomInt(1, 251);
    const ns = (role: Role) => `fg-${role}-${process.pid}-${this.id}`;
    this.ns = { client: ns('client'), gw: ns('gw'), server: ns('server') };
    this.ifaces = {
      client: `fg${this.id}c`,
      gwClient: `fg${this.id}gc`,
      gwServer: `fg${this.id}gs`,
      server: `fg${this.id}s`,
    };
    const x = this.net;
    this.ip4 = { client: `10.${x}.1.2`, gwClient: `10.${x}.1.1`, gwServer: `10.${x}.2.1`, server: `10.${x}.2.2` };
    this.ip6 = { client: `fd00:${x}:1::2`, gwClient: `fd00:${x}:1::1`, gwServer: `fd00:${x}:2::1`, server: `fd00:${x}:2::2` };
  }

  /** Addresses of one family. */
  addrs(family: Family = 4): Readonly<Addresses> {
    return family === 6 ? this.ip6 : this.ip4;
  }

  /** True once destroy() has been called. */
  get destroyed(): boolean {
    return this.destroying !== undefined;
  }

  /** A private temporary directory, removed by destroy() (kept when FG_E2E_KEEP=1). */
  get tmpDir(): string {
    if (this.tmp === undefined) this.tmp = mkdtempSync(join(tmpdir(), `fg-e2e-${this.id}-`));
    return this.tmp;
  }

  /** Runs argv inside a namespace to completion (`ip netns exec NS argv...`). */
  exec(role: Role, argv: readonly string[], opts?: ExecOptions): Promise<ExecResult> {
    this.assertAlive();
    return execArgv([requireBinary('ip'), 'netns', 'exec', this.ns[role], ...argv], opts);
  }

  /** Starts a long-running process inside a namespace; destroy() kills it if still running. */
  spawn(role: Role, argv: readonly string[], opts?: SpawnOptions): ProcessHandle {
    this.assertAlive();
    const handle = new ProcessHandle([requireBinary('ip'), 'netns', 'exec', this.ns[role], ...argv], opts);
    this.handles.add(handle);
    void handle.exited.then(() => this.handles.delete(handle));
    return handle;
  }

  /** Registers work for destroy() (run after processes are killed, before namespaces go). */
  onDestroy(fn: () => void | Promise<void>): void {
    this.cleanups.push(fn);
  }

  /** Tears everything down; idempotent, safe to call concurrently. */
  destroy(): Promise<void> {
    if (this.destroying === undefined) this.destroying = this.teardown();
    return this.destroying;
  }

  private async teardown(): Promise<void> {
    await Promise.all([...this.handles].map((h) => h.kill('SIGTERM', 1000)));
    for (const role of ['client', 'gw', 'server'] as const) killNamespacePids(this.ns[role]);
    for (const fn of this.cleanups.splice(0).reverse()) {
      try {
        await fn();
      } catch {
        // cleanup is best effort; namespaces still go below
      }
    }
    const ip = requireBinary('ip');
    for (const role of ['client', 'gw', 'server'] as const) {
      await execArgv([ip, 'netns', 'del', this.ns[role]]);
    }
    this.removeTmp();
    live.delete(this);
  }

  /** Synchronous teardown for exit handlers. */
  destroySync(): void {
    for (const h of this.handles) h.signalGroup('SIGKILL');
    for (const role of ['client', 'gw', 'server'] as const) {
      killNamespacePids(this.ns[role]);
      execArgvSync([requireBinary('ip'), 'netns', 'del', this.ns[role]]);
    }
    this.removeTmp();
    live.delete(this);
  }

  private removeTmp(): void {
    if (this.tmp === undefined) return;
    if (process.env.FG_E2E_KEEP === '1') {
      process.stderr.write(`e2e: kept ${this.tmp}\n`);
      return;
    }
    rmSync(this.tmp, { recursive: true, force: true });
  }

  private assertAlive(): void {
    if (this.destroying !== undefined) throw new HarnessError(`e2e: topology ${this.id} already destroyed`);
  }

  /** Builds the namespaces, links, addresses and routes. Called by createTopology(). */
  async build(): Promise<void> {
    const ip = requireBinary('ip');
    const sysctl = requireBinary('sysctl');
    const run = (argv: string[]) => execArgv(argv, { check: true, timeoutMs: 10_000 });
    const { ns, ifaces: i, ip4, ip6 } = this;
    for (const role of ['client', 'gw', 'server'] as const) await run([ip, 'netns', 'add', ns[role]]);
    live.add(this);
    // No duplicate address detection, link-local addresses included: a tentative address
    // delays neighbour discovery and costs the first IPv6 connection a SYN retransmission.
    for (const role of ['client', 'gw', 'server'] as const) {
      await run([ip, 'netns', 'exec', ns[role], sysctl, '-qw', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0']);
    }
    await run([ip, 'link', 'add', 'name', i.client, 'netns', ns.client, 'type', 'veth', 'peer', 'name', i.gwClient, 'netns', ns.gw]);
    await run([ip, 'link', 'add', 'name', i.server, 'netns', ns.server, 'type', 'veth', 'peer', 'name', i.gwServer, 'netns', ns.gw]);
    const plan: Array<[Role, string, string, string]> = [
      ['client', i.client, ip4.client, ip6.client],
      ['gw', i.gwClient, ip4.gwClient, ip6.gwClient],
      ['gw', i.gwServer, ip4.gwServer, ip6.gwServer],
      ['server', i.server, ip4.server, ip6.server],
    ];
    for (const [role, dev, a4, a6] of plan) {
      // Up before addressing: an IPv6 address added to a down link answers no neighbour
      // solicitations for about a second after the link comes up (measured: the first
      // IPv6 connection then costs a 1 s SYN retransmission).
      await run([ip, '-n', ns[role], 'link', 'set', dev, 'up']);
      await run([ip, '-n', ns[role], 'addr', 'add', `${a4}/24`, 'dev', dev]);
      // nodad: the address is usable at once instead of tentative for a second or two
      await run([ip, '-n', ns[role], '-6', 'addr', 'add', `${a6}/64`, 'dev', dev, 'nodad']);
    }
    for (const role of ['client', 'gw', 'server'] as const) await run([ip, '-n', ns[role], 'link', 'set', 'lo', 'up']);
    const mss = this.options.serverAdvMss;
    const advmss = mss === undefined ? [] : ['advmss', String(mss)];
    await run([ip, '-n', ns.client, 'route', 'add', 'default', 'via', ip4.gwClient]);
    await run([ip, '-n', ns.client, '-6', 'route', 'add', 'default', 'via', ip6.gwClient]);
    await run([ip, '-n', ns.server, 'route', 'add', 'default', 'via', ip4.gwServer, ...advmss]);
    await run([ip, '-n', ns.server, '-6', 'route', 'add', 'default', 'via', ip6.gwServer, ...advmss]);
    await run([ip, 'netns', 'exec', ns.gw, sysctl, '-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
    if (this.options.offloads === false) {
      const ethtool = requireBinary('ethtool');
      for (const [role, dev] of plan) {
        await run([ip, 'netns', 'exec', ns[role], ethtool, '-K', dev, 'tso', 'off', 'gso', 'off', 'gro', 'off']);
      }
    }
  }
}

/**
 * Builds a fresh client -- gw -- server topology with names unique to this run. Checks that
 * we are root and that iproute2/procps (and ethtool when offloads are off) are installed.
 */
export async function createTopology(opts: TopologyOptions = {}): Promise<Topology> {
  checkPrerequisites(opts.offloads === false ? ['ip', 'sysctl', 'ethtool'] : ['ip', 'sysctl']);
  if (opts.net !== undefined && !(Number.isInteger(opts.net) && opts.net >= 1 && opts.net <= 250)) {
    throw new HarnessError(`e2e: net must be an integer 1-250, got ${opts.net}`);
  }
  installExitHandlers();
  const topo = new Topology(opts);
  try {
    await topo.build();
  } catch (err) {
    topo.destroySync();
    throw err;
  }
  return topo;
}

/** Kills (SIGKILL) every process running inside a namespace. */
export function killNamespacePids(ns: string): number[] {
  const out = execArgvSync([requireBinary('ip'), 'netns', 'pids', ns]);
  const pids = out.split(/\s+/).filter((s) => /^\d+$/.test(s)).map(Number);
  for (const pid of pids) {
    if (pid === process.pid) continue;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  return pids;
}

/** Names of every network namespace on the machine. */
export async function listNamespaces(): Promise<string[]> {
  const res = await execArgv([requireBinary('ip'), 'netns', 'list'], { check: true });
  return res.stdout.split('\n').map((l) => l.trim().split(/\s+/)[0] ?? '').filter((n) => n !== '');
}

/**
 * Removes `fg-<role>-<pid>-<id>` namespaces whose pid is no longer alive (left over from a
 * crashed run), killing what still runs inside them. Returns the names removed.
 */
export async function cleanupStale(): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await listNamespaces()) {
    const m = NAME_PATTERN.exec(name);
    if (!m) continue;
    const pid = Number(m[2]);
    if (pidAlive(pid)) continue;
    killNamespacePids(name);
    const res = await execArgv([requireBinary('ip'), 'netns', 'del', name]);
    if (res.code === 0) removed.push(name);
  }
  return removed;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Destroys live topologies when the process exits or is interrupted. */
function installExitHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', () => {
    for (const topo of [...live]) topo.destroySync();
  });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    const onSignal = () => {
      for (const topo of [...live]) topo.destroySync();
      // Step aside and raise the signal again: with no listener left the process dies of it
      // as it would have; remaining listeners (signal-exit style ones that only re-raise
      // when they are alone) get a second delivery in which they are.
      process.off(signal, onSignal);
      process.kill(process.pid, signal);
    };
    process.on(signal, onSignal);
  }
}
