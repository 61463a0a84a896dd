/**
 * `flowgate demo` (root): the sandboxed tour a new user runs first.
 *
 * Lifecycle:
 *  1. check that we are root and the tools are there; remove namespaces a killed demo left;
 *  2. build a client - gateway - server sandbox of network namespaces (src/cli/demo/sandbox.ts);
 *  3. start the origin server (HTTP 80, HTTPS 443, a throwaway self-signed certificate) in the
 *     server namespace, apply flowgate's rules and start `flowgate run` in the gateway;
 *  4. drive curl through it from the client namespace (src/cli/demo/steps.ts), narrating each
 *     outcome and the decisions flowgate reported;
 *  5. read the daemon's counters from its control socket (`flowgate status --socket`);
 *  6. stop the daemon and remove everything: processes, namespaces, temporary files.
 * Step 6 also runs on failure, on SIGINT/SIGTERM (a second signal removes the sandbox
 * synchronously and exits at once) and on process exit. The whole tour is bounded by
 * DEMO_DEADLINE_MS. Exit code: 0 passed, 1 failed, 2 not root, 130/143 interrupted.
 */
import { existsSync } from 'node:fs';
import { delimiter, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import type { DecisionEvent } from '../filter/types.js';
import { askControl } from './control.js';
import { DEFAULT_RULES, chainName, printRules } from './rules.js';
import { SLOW_POLICY_MS, certArgv, writeDemoFiles, type DemoFiles } from './demo/assets.js';
import { Narrator } from './demo/narrate.js';
import { ROLES, Sandbox, removeStale, type SandboxProcess } from './demo/sandbox.js';
import { EXPECTED, STEPS, runStep, type StepContext } from './demo/steps.js';

/** The whole demo must finish within this many ms, or it fails and cleans up. Default 18000. */
export const DEMO_DEADLINE_MS = 18_000;

/** The line printed (exit 2) when not run as root. */
export const NEEDS_ROOT = 'flowgate demo needs root (network namespaces and iptables): run it with sudo';

/** Programs the demo runs, with the Debian package that has each. */
const TOOLS: ReadonlyArray<[string, string]> = [
  ['ip', 'iproute2'], ['sysctl', 'procps'], ['iptables', 'iptables'], ['iptables-restore', 'iptables'],
  ['curl', 'curl'], ['openssl', 'openssl'],
];

/** Runs the demo; resolves with the exit code. */
export async function runDemo(): Promise<number> {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    process.stderr.write(`${NEEDS_ROOT}\n`);
    return 2;
  }
  // ip, sysctl and iptables live in sbin, which a plain `su` or a cron PATH may lack; the
  // children (`ip netns exec ...`) inherit the completed PATH.
  const path = (process.env.PATH ?? '').split(delimiter).filter((d) => d !== '');
  for (const d of ['/usr/local/sbin', '/usr/sbin', '/sbin']) if (!path.includes(d)) path.push(d);
  process.env.PATH = path.join(delimiter);
  const missing = TOOLS.find(([bin]) => !path.some((d) => existsSync(join(d, bin))));
  if (missing !== undefined) {
    process.stderr.write(`flowgate demo needs ${missing[0]}: install the Debian package ${missing[1]}\n`);
    return 1;
  }
  const say = new Narrator(process.stdout);
  const t0 = performance.now();
  const stale = removeStale();
  const sb = new Sandbox();
  const guard = guardSignals(sb, say);
  let deadlineTimer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'deadline'>((r) => (deadlineTimer = setTimeout(() => r('deadline'), DEMO_DEADLINE_MS)));
  const tour = new Tour(sb, say);
  say.line(say.bold('flowgate demo') + ': real clients through flowgate, inside a private sandbox of network namespaces');
  if (stale.length > 0) say.line(say.dim(`(removed ${stale.length} namespaces left by an earlier demo that was killed)`));
  try {
    const end = await Promise.race([
      tour.run().then((ok) => ({ kind: 'done' as const, ok }), (err: unknown) => ({ kind: 'error' as const, err })),
      guard.signalled.then((code) => ({ kind: 'signal' as const, code })),
      deadline.then(() => ({ kind: 'deadline' as const })),
    ]);
    if (end.kind === 'signal') {
      await sb.destroy();
      say.force(leftovers(sb).length === 0 ? 'Cleaned up: nothing left behind.' : `Left behind: ${leftovers(sb).join(', ')}`);
      return end.code;
    }
    let failures = tour.failed;
    if (end.kind !== 'done') {
      const why = end.kind === 'deadline' ? `it took longer than ${DEMO_DEADLINE_MS / 1000} s`
        : end.err instanceof Error ? end.err.message : String(end.err);
      say.mute(); // the tour may still be unwinding; nothing it says matters now
      say.force('');
      say.check(false, `the demo could not finish: ${why}`, 0, true);
      failures = [why];
    }
    const cleaned = await tour.cleanUp();
    if (!cleaned) failures = [...failures, 'cleanup incomplete'];
    const ok = end.kind === 'done' && end.ok && cleaned;
    const took = ((performance.now() - t0) / 1000).toFixed(1);
    say.force('');
    say.force(ok ? say.green(say.bold(`✔ Demo passed in ${took} s.`))
      : say.red(say.bold(`✘ Demo failed (${took} s): ${failures.join('; ')}.`)));
    return ok ? 0 : 1;
  } finally {
    clearTimeout(deadlineTimer);
    await sb.destroy();
    guard.dispose();
  }
}

/** The tour over one sandbox: build, drive, count, clean up. */
class Tour {
  /** Short descriptions of what failed. */
  readonly failed: string[] = [];
  private readonly decisions: DecisionEvent[] = [];
  private readonly originHosts: string[] = [];
  private daemon: SandboxProcess | undefined;

  constructor(private readonly sb: Sandbox, private readonly say: Narrator) {}

  /** Steps 2-5; resolves with whether every check passed. Throws when the sandbox cannot be built. */
  async run(): Promise<boolean> {
    const { sb, say } = this;
    const files = await this.build();
    say.section('Clients', `curl in ${sb.ns.client}, names resolved to the server ${sb.ip.server}`);
    const ctx: StepContext = { sb, say, cacert: files.cert, decisions: this.decisions, originHosts: this.originHosts };
    for (const step of STEPS) {
      const r = await runStep(ctx, step);
      if (!r.ok) this.failed.push(`${step.urls.join(' ')} ${EXPECTED[step.expect]}`);
    }
    await this.counters(files.socket);
    return this.failed.length === 0;
  }

  private async build(): Promise<DemoFiles> {
    const { sb, say } = this;
    say.section('Building the sandbox');
    await sb.build();
    say.line(`  client   ${sb.ns.client.padEnd(22)} ${sb.ip.client}, default route via the gateway`);
    say.line(`  gateway  ${sb.ns.gw.padEnd(22)} ${sb.ip.gwClient} | ${sb.ip.gwServer}, forwarding on`);
    say.line(`  server   ${sb.ns.server.padEnd(22)} ${sb.ip.server}`);
    const files = writeDemoFiles(sb.dir);
    const cert = await sb.exec('server', certArgv(files.cert, files.key), 20_000);
    if (cert.code !== 0) throw new Error(`openssl req -x509 failed: ${cert.stderr.trim().split('\n').pop()}`);
    await this.startOrigin(files);
    say.line(`  origin   HTTP :80 and HTTPS :443 for allowed.test, blocked.test, slow.test ${say.dim('(throwaway self-signed cert)')}`);

    const rules = { ...DEFAULT_RULES, family: '4' as const };
    const applied = await sb.exec('gw', [...flowgateArgv(), 'rules', 'apply', '--family', '4'], 15_000);
    if (applied.code !== 0) throw new Error(`flowgate rules apply failed: ${applied.stderr.trim()}`);
    const count = printRules(rules).split('\n').filter((l) => l.startsWith(`-A ${chainName(rules)} `)).length;
    say.line(`  rules    chain ${chainName(rules)} (${count} rules) hooked into the gateway's FORWARD chain, TCP -> NFQUEUE 0`);
    say.line(`  policy   block blocked.test, allow allowed.test, anything else: ask demo-policy.mjs ` +
      say.dim(`(it takes ${SLOW_POLICY_MS} ms over slow.test)`));
    await this.startDaemon(files);
    say.line(`  flowgate running in the gateway ${say.dim(`(pid ${this.daemon!.child.pid}, flowgate run --config ${files.config})`)}`);
    return files;
  }

  private async startOrigin(files: DemoFiles): Promise<void> {
    let ready!: () => void;
    const isReady = new Promise<void>((r) => (ready = r));
    const origin = this.sb.spawn('server', [...originArgv(), files.cert, files.key], (line, stream) => {
      if (stream !== 'stdout' || !line.startsWith('{')) return;
      const ev = JSON.parse(line) as { type: string; host?: string };
      if (ev.type === 'ready') ready();
      else if (ev.type === 'request') this.originHosts.push(ev.host ?? '');
    });
    await waitFor(isReady, origin, 'the origin server', 10_000);
  }

  private async startDaemon(files: DemoFiles): Promise<void> {
    let ready!: () => void;
    const isReady = new Promise<void>((r) => (ready = r));
    this.daemon = this.sb.spawn('gw', [...flowgateArgv(), 'run', '--config', files.config], (line, stream) => {
      if (stream === 'stderr') {
        if (line.includes('bound queue')) ready();
        return;
      }
      try {
        const ev = JSON.parse(line) as { type?: string };
        if (ev.type === 'decision') this.decisions.push(ev as DecisionEvent);
      } catch { /* not an event */ }
    });
    await waitFor(isReady, this.daemon, 'flowgate', 15_000);
  }

  /** Step 5: the daemon's counters, once everything has settled. */
  private async counters(socket: string): Promise<void> {
    const { say } = this;
    say.section('Counters', `flowgate status --socket ${socket}`);
    type Status = { received: number; verdicts: number; held: number; paused_flows: number; decisions: number;
      kernel_waiting: number; by_reason: Record<string, number> };
    let st: Status | undefined;
    const until = Date.now() + 3000;
    for (;;) {
      st = await askControl(socket, 'status') as Status;
      if ((st.held === 0 && st.received === st.verdicts && st.kernel_waiting === 0) || Date.now() > until) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const settled = st.received > 0 && st.received === st.verdicts && st.held === 0 && st.kernel_waiting === 0;
    say.check(settled, `${st.received} packets received, ${st.verdicts} verdicts, ${st.held} held, ` +
      `${st.paused_flows} flows paused, ${st.kernel_waiting} waiting in the kernel queue`);
    const reasons = Object.entries(st.by_reason).map(([k, n]) => `${k} ${n}`).join(', ');
    say.line(`    ${st.decisions} decisions ${say.dim(`(${reasons})`)}`);
    if (settled) say.line(`    ${say.green('→')} every packet got exactly one verdict and nothing is left waiting`);
    else this.failed.push('counters not settled');
  }

  /**
   * Step 6, narrated even when the tour's own lines are muted (it runs after the tour ended or
   * was abandoned): stop the daemon, remove the sandbox, check that nothing is left.
   */
  async cleanUp(): Promise<boolean> {
    const { sb, say } = this;
    say.section('Cleaning up', undefined, true);
    let stopped = 'flowgate was not running';
    const daemon = this.daemon;
    if (daemon !== undefined && daemon.child.exitCode === null && daemon.child.signalCode === null) {
      daemon.child.kill('SIGTERM');
      const code = await Promise.race([daemon.exited, new Promise<'slow'>((r) => setTimeout(() => r('slow'), 5000).unref())]);
      stopped = code === 'slow' ? 'flowgate did not stop within 5 s (killed)' : `flowgate stopped (exit ${code})`;
    }
    await sb.destroy();
    const left = leftovers(sb);
    say.force(`  ${stopped}, origin server stopped`);
    say.check(left.length === 0, left.length === 0
      ? `namespaces ${sb.ns.client.replace(/-client$/, '')}-{${ROLES.join(',')}} deleted, ${sb.dir} removed`
      : `left behind: ${left.join(', ')}`, 2, true);
    return left.length === 0;
  }
}

/** Namespaces or files of this sandbox that still exist. */
function leftovers(sb: Sandbox): string[] {
  const list = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout ?? '';
  const names = new Set(list.split('\n').map((l) => l.trim().split(/\s+/)[0]));
  const left = ROLES.map((r) => sb.ns[r]).filter((n) => names.has(n));
  if (existsSync(sb.dir)) left.push(sb.dir);
  return left;
}

/** Resolves once `ready` does; rejects if the process exits first or `ms` pass. */
async function waitFor(ready: Promise<void>, proc: SandboxProcess, what: string, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      ready,
      proc.exited.then((code) => {
        throw new Error(`${what} exited (${code}) before it was ready: ${proc.stderrTail().trim().split('\n').slice(-3).join(' | ')}`);
      }),
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} was not ready within ${ms} ms`)), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** SIGINT/SIGTERM: mute the tour and let runDemo clean up; a second signal cleans up at once. Exit: clean up synchronously. */
function guardSignals(sb: Sandbox, say: Narrator): { signalled: Promise<number>; dispose(): void } {
  let resolve!: (code: number) => void;
  const signalled = new Promise<number>((r) => (resolve = r));
  let count = 0;
  const handler = (sig: NodeJS.Signals) => {
    if (++count > 1) {
      sb.destroySync();
      say.force('flowgate demo: sandbox removed.');
      process.exit(sig === 'SIGINT' ? 130 : 143);
    }
    say.mute();
    say.force(`\n${sig === 'SIGINT' ? 'Interrupted' : 'Terminated'}: cleaning up (stopping processes, deleting namespaces and temporary files)...`);
    resolve(sig === 'SIGINT' ? 130 : 143);
  };
  const onExit = () => sb.destroySync();
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  process.on('exit', onExit);
  return {
    signalled,
    dispose() {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
      process.off('exit', onExit);
    },
  };
}

/** argv that runs this flowgate's CLI: bin/flowgate.js of the package, or the entry next to this file. */
function flowgateArgv(): string[] {
  const here = fileURLToPath(import.meta.url);
  if (extname(here) === '.js') {
    const bin = fileURLToPath(new URL('../../../bin/flowgate.js', import.meta.url));
    if (existsSync(bin)) return [process.execPath, bin];
  }
  return [process.execPath, ...process.execArgv, fileURLToPath(new URL(`./entry${extname(here)}`, import.meta.url))];
}

/** argv of the origin server script (compiled next to this file, or the source under a TypeScript loader). */
function originArgv(): string[] {
  const ext = extname(fileURLToPath(import.meta.url));
  const script = fileURLToPath(new URL(`./demo/origin${ext}`, import.meta.url));
  return [process.execPath, ...(ext === '.js' ? [] : process.execArgv), script];
}
