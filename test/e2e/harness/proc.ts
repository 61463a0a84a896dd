/**
 * Child processes for the end-to-end harness: one-shot commands with captured output, and
 * long-running processes with line events, waits and kill. Nothing here knows about
 * namespaces; topology.ts prefixes argv with `ip netns exec NS`.
 */
import { spawn as nodeSpawn, execFileSync, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

/** An error raised by the harness itself (missing tool, failed setup, timeout waiting). */
export class HarnessError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'HarnessError';
  }
}

/** Debian package that provides each external program the harness runs. */
export const DEBIAN_PACKAGES: Readonly<Record<string, string>> = {
  ip: 'iproute2',
  tc: 'iproute2',
  iptables: 'iptables',
  ip6tables: 'iptables',
  'iptables-save': 'iptables',
  'ip6tables-save': 'iptables',
  ethtool: 'ethtool',
  curl: 'curl',
  openssl: 'openssl',
  chromium: 'chromium',
  nginx: 'nginx-light',
  iperf3: 'iperf3',
  wrk: 'wrk',
  tshark: 'tshark',
  dumpcap: 'tshark',
  sysctl: 'procps',
  kill: 'procps',
  fuser: 'psmisc',
};

const binaryCache = new Map<string, string>();

/**
 * Absolute path of an installed program, searched in PATH and the sbin directories.
 * Throws a HarnessError naming the Debian package when it is missing: e2e tests never skip.
 */
export function requireBinary(name: string): string {
  const cached = binaryCache.get(name);
  if (cached !== undefined) return cached;
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/sbin', '/usr/bin', '/bin'];
  for (const dir of dirs) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      binaryCache.set(name, candidate);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  const pkg = DEBIAN_PACKAGES[name] ?? name;
  throw new HarnessError(`e2e: required program '${name}' not found; install it with: apt-get install ${pkg}`);
}

/**
 * Checks that we run as root and that every named program exists, reporting all that are
 * missing in one message with their Debian packages.
 */
export function checkPrerequisites(binaries: readonly string[] = ['ip', 'iptables', 'sysctl']): void {
  const problems: string[] = [];
  if (process.getuid?.() !== 0) problems.push('e2e tests must run as root (network namespaces, iptables)');
  const missing: string[] = [];
  for (const name of binaries) {
    try {
      requireBinary(name);
    } catch {
      missing.push(name);
    }
  }
  if (missing.length > 0) {
    const pkgs = [...new Set(missing.map((m) => DEBIAN_PACKAGES[m] ?? m))];
    problems.push(`missing programs: ${missing.join(', ')}; install with: apt-get install ${pkgs.join(' ')}`);
  }
  if (problems.length > 0) throw new HarnessError(`e2e prerequisites: ${problems.join('; ')}`);
}

/** How a process ended: exit code, or the signal that killed it. */
export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Options for a one-shot command. */
export interface ExecOptions {
  /** Kill the command (SIGKILL) after this many milliseconds; default 30000. */
  timeoutMs?: number;
  /** Bytes written to the command's stdin, which is then closed (default: empty stdin). */
  input?: string | Uint8Array;
  /** Throw a HarnessError when the command exits non-zero or times out; default false. */
  check?: boolean;
  /** Extra environment variables (merged over process.env). */
  env?: Record<string, string>;
}

/** Result of a one-shot command. */
export interface ExecResult {
  argv: string[];
  /** Exit code, or null when killed by a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Raw stdout, for binary output. */
  stdoutBuf: Buffer;
  /** Wall-clock duration in milliseconds, spawn to exit. */
  timeMs: number;
  /** True when the command was killed by the timeout. */
  timedOut: boolean;
}

/** Runs argv to completion, capturing output; never rejects for a non-zero exit unless `check`. */
export function execArgv(argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const started = performance.now();
  return new Promise((resolve, reject) => {
    let child: ChildProcess;
    try {
      child = nodeSpawn(argv[0]!, argv.slice(1), {
        stdio: ['pipe', 'pipe', 'pipe'],
        env: opts.env ? { ...process.env, ...opts.env } : process.env,
      });
    } catch (err) {
      reject(new HarnessError(`e2e: cannot start ${argv[0]}`, { cause: err }));
      return;
    }
    const out: Buffer[] = [];
    const errOut: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout!.on('data', (d: Buffer) => out.push(d));
    child.stderr!.on('data', (d: Buffer) => errOut.push(d));
    child.stdin!.on('error', () => {});
    child.stdin!.end(opts.input ?? '');
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new HarnessError(`e2e: cannot run ${argv.join(' ')}: ${err.message}`, { cause: err }));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const stdoutBuf = Buffer.concat(out);
      const result: ExecResult = {
        argv: [...argv],
        code,
        signal,
        stdout: stdoutBuf.toString('utf8'),
        stderr: Buffer.concat(errOut).toString('utf8'),
        stdoutBuf,
        timeMs: performance.now() - started,
        timedOut,
      };
      if (opts.check && (code !== 0 || timedOut)) {
        const why = timedOut ? `timed out after ${timeoutMs} ms` : `exited ${code ?? signal}`;
        reject(new HarnessError(`e2e: '${argv.join(' ')}' ${why}: ${result.stderr.trim() || result.stdout.trim()}`));
        return;
      }
      resolve(result);
    });
  });
}

/** Runs argv synchronously, ignoring failures; for exit handlers, where nothing async runs. */
export function execArgvSync(argv: readonly string[]): string {
  try {
    return execFileSync(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 }).toString();
  } catch {
    return '';
  }
}

/** Which output stream a line came from. */
export type StreamName = 'stdout' | 'stderr';

/** Options for a long-running process. */
export interface SpawnOptions {
  /** Extra environment variables (merged over process.env). */
  env?: Record<string, string>;
  /** Working directory. */
  cwd?: string;
}

/**
 * A long-running child process. Collects stdout/stderr, emits `line` (line, stream) for each
 * complete line and `exit` (ExitInfo) once. Runs in its own process group so kill() reaches
 * its children too (Chromium, nginx workers).
 */
export class ProcessHandle extends EventEmitter {
  /** The argv that was started. */
  readonly argv: string[];
  /** Operating-system pid (of `ip netns exec`, which execs into the command: same pid). */
  readonly pid: number;
  /** Resolves when the process has exited and its output is closed. */
  readonly exited: Promise<ExitInfo>;
  private readonly child: ChildProcess;
  private readonly out: Buffer[] = [];
  private readonly err: Buffer[] = [];
  private readonly lines: Array<{ line: string; stream: StreamName }> = [];
  private exitInfo: ExitInfo | undefined;

  constructor(argv: readonly string[], opts: SpawnOptions = {}) {
    super();
    this.argv = [...argv];
    this.child = nodeSpawn(argv[0]!, argv.slice(1), {
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true,
      env: opts.env ? { ...process.env, ...opts.env } : process.env,
      cwd: opts.cwd,
    });
    if (this.child.pid === undefined) throw new HarnessError(`e2e: cannot start ${argv.join(' ')}`);
    this.pid = this.child.pid;
    this.child.stdin!.on('error', () => {});
    this.collect('stdout', this.child.stdout!, this.out);
    this.collect('stderr', this.child.stderr!, this.err);
    this.exited = new Promise((resolve) => {
      this.child.on('close', (code, signal) => {
        this.exitInfo = { code, signal };
        this.emit('exit', this.exitInfo);
        resolve(this.exitInfo);
      });
    });
    this.child.on('error', () => {});
  }

  private collect(stream: StreamName, source: NodeJS.ReadableStream, sink: Buffer[]): void {
    let partial = '';
    source.on('data', (d: Buffer) => {
      sink.push(d);
      partial += d.toString('utf8');
      let nl: number;
      while ((nl = partial.indexOf('\n')) >= 0) {
        const line = partial.slice(0, nl).replace(/\r$/, '');
        partial = partial.slice(nl + 1);
        this.lines.push({ line, stream });
        this.emit('line', line, stream);
      }
    });
    source.on('end', () => {
      if (partial !== '') {
        this.lines.push({ line: partial, stream });
        this.emit('line', partial, stream);
        partial = '';
      }
    });
  }

  /** Everything written to stdout so far. */
  get stdout(): string {
    return Buffer.concat(this.out).toString('utf8');
  }

  /** Everything written to stderr so far. */
  get stderr(): string {
    return Buffer.concat(this.err).toString('utf8');
  }

  /** True until the process has exited. */
  get running(): boolean {
    return this.exitInfo === undefined;
  }

  /** Writes to the process's stdin. */
  write(data: string | Uint8Array): void {
    this.child.stdin!.write(data);
  }

  /**
   * Resolves with the first line (already received or future) that matches; rejects when the
   * process exits first or after `timeoutMs` (default 10000), quoting the output tail.
   */
  waitForLine(
    match: RegExp | ((line: string) => boolean),
    opts: { timeoutMs?: number; stream?: StreamName | 'both' } = {},
  ): Promise<string> {
    const test = typeof match === 'function' ? match : (l: string) => match.test(l);
    const wanted = opts.stream ?? 'both';
    const ok = (line: string, stream: StreamName) => (wanted === 'both' || wanted === stream) && test(line);
    const seen = this.lines.find((l) => ok(l.line, l.stream));
    if (seen) return Promise.resolve(seen.line);
    const timeoutMs = opts.timeoutMs ?? 10_000;
    return new Promise((resolve, reject) => {
      const cleanup = () => {
        clearTimeout(timer);
        this.off('line', onLine);
        this.off('exit', onExit);
      };
      const onLine = (line: string, stream: StreamName) => {
        if (!ok(line, stream)) return;
        cleanup();
        resolve(line);
      };
      const onExit = (info: ExitInfo) => {
        cleanup();
        reject(new HarnessError(`e2e: ${this.argv.join(' ')} exited (${info.code ?? info.signal}) before ${match}; ${this.tail()}`));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new HarnessError(`e2e: no line matching ${match} within ${timeoutMs} ms from ${this.argv.join(' ')}; ${this.tail()}`));
      }, timeoutMs);
      this.on('line', onLine);
      if (!this.running) onExit(this.exitInfo!);
      else this.on('exit', onExit);
    });
  }

  /** The last lines of output, for error messages. */
  tail(maxChars = 1500): string {
    const text = `stdout: ${this.stdout.slice(-maxChars / 2)} stderr: ${this.stderr.slice(-maxChars / 2)}`;
    return text.replace(/\s+/g, ' ').trim();
  }

  /**
   * Sends `signal` (default SIGTERM) to the process group; after `graceMs` (default 2000)
   * sends SIGKILL. Resolves with the exit info. Safe to call after exit.
   */
  async kill(signal: NodeJS.Signals = 'SIGTERM', graceMs = 2000): Promise<ExitInfo> {
    if (!this.running) return this.exitInfo!;
    this.signalGroup(signal);
    if (signal === 'SIGKILL') return this.exited;
    let timer: NodeJS.Timeout | undefined;
    const killed = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        this.signalGroup('SIGKILL');
        resolve();
      }, graceMs);
    });
    await Promise.race([this.exited, killed]);
    clearTimeout(timer);
    return this.exited;
  }

  /**
   * Sends a signal to the whole process group (also after the leader exited, to reach
   * lingering children), falling back to the process itself while it runs.
   */
  signalGroup(signal: NodeJS.Signals): void {
    try {
      process.kill(-this.pid, signal);
    } catch {
      if (!this.running) return;
      try {
        process.kill(this.pid, signal);
      } catch {
        // already gone
      }
    }
  }
}

/**
 * Polls `check` every `intervalMs` (default 50) until it returns a truthy value, which is
 * resolved; rejects with `what` in the message after `timeoutMs` (default 5000).
 */
export async function waitUntil<T>(
  check: () => T | Promise<T>,
  opts: { timeoutMs?: number; intervalMs?: number; what?: string } = {},
): Promise<T> {
  const deadline = performance.now() + (opts.timeoutMs ?? 5000);
  for (;;) {
    const value = await check();
    if (value) return value;
    if (performance.now() > deadline) {
      throw new HarnessError(`e2e: timed out after ${opts.timeoutMs ?? 5000} ms waiting for ${opts.what ?? 'a condition'}`);
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 50));
  }
}
