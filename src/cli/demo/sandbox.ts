/**
 * The demo's sandbox: three network namespaces (client, gateway, server) joined by two veth
 * pairs, a temporary directory, and every process started inside them.
 *
 * Lifecycle:
 *  1. `new Sandbox()` picks names unique to this process (`fgdemo-<pid>-<role>`) and a 10.X
 *     range no local address or route uses; nothing exists yet.
 *  2. `build()` creates the namespaces, links, addresses and routes, and turns forwarding on
 *     in the gateway. Whatever it built before a failure is still removed by `destroy()`.
 *  3. `exec()` / `spawn()` run programs inside a namespace; every child is remembered.
 *  4. `destroy()` (idempotent) stops the children (SIGTERM, SIGKILL after a grace period),
 *     kills anything still running in the namespaces, deletes them (with their veths and
 *     iptables rules) and removes the temporary directory. `destroySync()` does the same
 *     synchronously, for exit handlers.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FlowgateError } from '../../errors.js';

/** The three namespaces. */
export type Role = 'client' | 'gw' | 'server';

/** The roles, in the order they are built. */
export const ROLES: readonly Role[] = ['client', 'gw', 'server'];

/** Prefix of every namespace the demo creates. */
export const NS_PREFIX = 'fgdemo-';

/** What a finished command left behind. */
export interface ExecResult {
  /** Exit code; null when killed by a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** A long-running child inside a namespace, with its output split into lines. */
export interface SandboxProcess {
  child: ChildProcess;
  /** Resolves with the exit code (null for a signal) once the child has exited. */
  exited: Promise<number | null>;
  /** The last lines of stderr, for error messages. */
  stderrTail(): string;
}

/** Milliseconds a child gets between SIGTERM and SIGKILL in `destroy()`. Default 1500. */
export const KILL_GRACE_MS = 1500;

/** The namespaces, addresses and processes of one demo run. */
export class Sandbox {
  /** Namespace names per role. */
  readonly ns: Readonly<Record<Role, string>>;
  /** X in 10.X.1.0/24 (client side) and 10.X.2.0/24 (server side). */
  readonly net: number;
  /** IPv4 addresses, without prefix length. */
  readonly ip: Readonly<{ client: string; gwClient: string; gwServer: string; server: string }>;
  /** The temporary directory (config, policy module, certificate, control socket). */
  readonly dir: string;
  private readonly children = new Set<ChildProcess>();
  private destroying: Promise<void> | undefined;
  private removed = false;

  constructor(net = freeNet()) {
    this.ns = { client: nsName('client'), gw: nsName('gw'), server: nsName('server') };
    this.net = net;
    this.ip = { client: `10.${net}.1.2`, gwClient: `10.${net}.1.1`, gwServer: `10.${net}.2.1`, server: `10.${net}.2.2` };
    this.dir = mkdtempSync(join(tmpdir(), `fgdemo-${process.pid}-`));
  }

  /** True once destroy() has begun. */
  get destroyed(): boolean {
    return this.destroying !== undefined;
  }

  /** Builds namespaces, veths (created directly inside their namespaces), addresses and routes. */
  async build(): Promise<void> {
    const { ns, ip } = this;
    const run = async (...argv: string[]) => {
      this.assertAlive(); // a Ctrl-C during the build stops it here
      const res = await this.run(argv, 10_000);
      if (res.code !== 0) throw new FlowgateError('ERR_DEMO', `${argv.join(' ')} failed: ${res.stderr.trim()}`);
    };
    for (const role of ROLES) await run('ip', 'netns', 'add', ns[role]);
    // Interface names only need to be unique inside their own namespace.
    await run('ip', 'link', 'add', 'name', 'to-gw', 'netns', ns.client, 'type', 'veth', 'peer', 'name', 'to-client', 'netns', ns.gw);
    await run('ip', 'link', 'add', 'name', 'to-gw', 'netns', ns.server, 'type', 'veth', 'peer', 'name', 'to-server', 'netns', ns.gw);
    const plan: Array<[Role, string, string]> = [
      ['client', 'to-gw', ip.client], ['gw', 'to-client', ip.gwClient], ['gw', 'to-server', ip.gwServer], ['server', 'to-gw', ip.server],
    ];
    for (const [role, dev, addr] of plan) {
      await run('ip', '-n', ns[role], 'addr', 'add', `${addr}/24`, 'dev', dev);
      await run('ip', '-n', ns[role], 'link', 'set', dev, 'up');
    }
    for (const role of ROLES) await run('ip', '-n', ns[role], 'link', 'set', 'lo', 'up');
    await run('ip', '-n', ns.client, 'route', 'add', 'default', 'via', ip.gwClient);
    await run('ip', '-n', ns.server, 'route', 'add', 'default', 'via', ip.gwServer);
    await run('ip', 'netns', 'exec', ns.gw, 'sysctl', '-qw', 'net.ipv4.ip_forward=1');
  }

  /** Runs argv inside a namespace to completion; never rejects for a non-zero exit. */
  exec(role: Role, argv: readonly string[], timeoutMs = 10_000, input?: string): Promise<ExecResult> {
    this.assertAlive();
    return this.run(['ip', 'netns', 'exec', this.ns[role], ...argv], timeoutMs, input);
  }

  /** Starts a long-running program inside a namespace; `onLine` gets each stdout/stderr line. */
  spawn(role: Role, argv: readonly string[], onLine: (line: string, stream: 'stdout' | 'stderr') => void): SandboxProcess {
    this.assertAlive();
    const child = spawn('ip', ['netns', 'exec', this.ns[role], ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.track(child);
    const tail: string[] = [];
    for (const stream of ['stdout', 'stderr'] as const) {
      let buf = '';
      child[stream]!.setEncoding('utf8');
      child[stream]!.on('data', (d: string) => {
        buf += d;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (stream === 'stderr') {
            tail.push(line);
            if (tail.length > 20) tail.shift();
          }
          onLine(line, stream);
        }
      });
    }
    const exited = new Promise<number | null>((resolve) => {
      child.on('error', () => resolve(null));
      child.on('exit', (code) => resolve(code));
    });
    return { child, exited, stderrTail: () => tail.join('\n') };
  }

  /** Tears everything down; idempotent, concurrent calls share one teardown. */
  destroy(): Promise<void> {
    if (this.destroying === undefined) this.destroying = this.teardown();
    return this.destroying;
  }

  /** The same as destroy(), synchronously (exit handlers, a second Ctrl-C). */
  destroySync(): void {
    if (this.destroying === undefined) this.destroying = Promise.resolve();
    if (this.removed) return;
    for (const c of this.children) signal(c, 'SIGKILL');
    // Every name, built or not: they carry our pid, so they can only be ours, and a build
    // interrupted mid-command may have created one it never recorded.
    for (const role of ROLES) {
      killNamespacePids(this.ns[role]);
      spawnSync('ip', ['netns', 'del', this.ns[role]], { stdio: 'ignore' });
    }
    rmSync(this.dir, { recursive: true, force: true });
    this.removed = true;
  }

  private async teardown(): Promise<void> {
    // Children first (the build's own `ip` commands included), so nothing is created after.
    for (let i = 0; i < 3 && this.children.size > 0; i++) await Promise.all([...this.children].map((c) => stopChild(c)));
    for (const role of ROLES) {
      killNamespacePids(this.ns[role]);
      await this.run(['ip', 'netns', 'del', this.ns[role]], 5000);
    }
    rmSync(this.dir, { recursive: true, force: true });
    this.removed = true;
  }

  private run(argv: readonly string[], timeoutMs: number, input?: string): Promise<ExecResult> {
    return new Promise((resolve) => {
      const child = spawn(argv[0]!, argv.slice(1), { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
      this.track(child);
      let stdout = '';
      let stderr = '';
      child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
      child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      const timer = setTimeout(() => signal(child, 'SIGKILL'), timeoutMs);
      child.on('error', (err) => {
        clearTimeout(timer);
        resolve({ code: 127, signal: null, stdout, stderr: stderr + err.message });
      });
      child.on('close', (code, sig) => {
        clearTimeout(timer);
        resolve({ code, signal: sig, stdout, stderr });
      });
      if (input !== undefined) {
        child.stdin!.on('error', () => {});
        child.stdin!.end(input);
      }
    });
  }

  private track(child: ChildProcess): void {
    this.children.add(child);
    child.on('exit', () => this.children.delete(child));
    child.on('error', () => this.children.delete(child));
  }

  private assertAlive(): void {
    if (this.destroying !== undefined) throw new FlowgateError('ERR_DEMO', 'the sandbox is being removed');
  }
}

function nsName(role: Role): string {
  return `${NS_PREFIX}${process.pid}-${role}`;
}

function signal(child: ChildProcess, sig: NodeJS.Signals): void {
  if (child.exitCode !== null || child.signalCode !== null) return;
  try {
    child.kill(sig);
  } catch { /* already gone */ }
}

/** SIGTERM, then SIGKILL after KILL_GRACE_MS; resolves once the child has exited. */
function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => signal(child, 'SIGKILL'), KILL_GRACE_MS);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    signal(child, 'SIGTERM');
  });
}

/** SIGKILLs every process still running inside a namespace (except ourselves). */
function killNamespacePids(ns: string): void {
  const out = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).stdout ?? '';
  for (const pid of out.split(/\s+/).filter((s) => /^\d+$/.test(s)).map(Number)) {
    if (pid === process.pid) continue;
    try {
      process.kill(pid, 'SIGKILL');
    } catch { /* already gone */ }
  }
}

/**
 * A random X in 16-250 such that nothing in this namespace uses 10.X.0.0/16 (addresses from
 * `ip -o addr`, routes from `ip -o route`), so the sandbox's addresses cannot clash with a
 * local network.
 */
export function freeNet(): number {
  const used = [
    spawnSync('ip', ['-o', '-4', 'addr'], { encoding: 'utf8' }).stdout ?? '',
    spawnSync('ip', ['-o', '-4', 'route', 'show', 'table', 'all'], { encoding: 'utf8' }).stdout ?? '',
  ].join('\n');
  const taken = new Set<number>();
  for (const m of used.matchAll(/\b10\.(\d{1,3})\./g)) taken.add(Number(m[1]));
  // A route like 10.0.0.0/8 covers every X: then no choice is clash-free, and any will do.
  const candidates: number[] = [];
  for (let x = 16; x <= 250; x++) if (!taken.has(x)) candidates.push(x);
  return candidates.length > 0 ? candidates[randomInt(candidates.length)]! : randomInt(16, 251);
}

/**
 * Removes what a demo killed outright (SIGKILL) left: `fgdemo-<pid>-<role>` namespaces, with
 * the processes still running in them, and `fgdemo-<pid>-*` temporary directories, whose pid
 * is dead or is ours (reused from a dead run). Returns the namespace names removed.
 */
export function removeStale(): string[] {
  try {
    for (const name of readdirSync(tmpdir())) {
      const m = /^fgdemo-(\d+)-[A-Za-z0-9]{6}$/.exec(name);
      if (m && (Number(m[1]) === process.pid || !pidAlive(Number(m[1])))) rmSync(join(tmpdir(), name), { recursive: true, force: true });
    }
  } catch { /* an unreadable temp dir: nothing of ours there */ }
  return removeStaleNamespaces();
}

function removeStaleNamespaces(): string[] {
  const out = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout ?? '';
  const removed: string[] = [];
  for (const line of out.split('\n')) {
    const name = line.trim().split(/\s+/)[0] ?? '';
    const m = /^fgdemo-(\d+)-(client|gw|server)$/.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid !== process.pid && pidAlive(pid)) continue;
    killNamespacePids(name);
    if (spawnSync('ip', ['netns', 'del', name], { stdio: 'ignore' }).status === 0) removed.push(name);
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
