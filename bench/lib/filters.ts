/**
 * The packet filters the benchmark compares, each started inside the gateway namespace: the C
 * accept loop (bench/c-accept), the npm `nfqueue` binding accepting everything
 * (scripts/nfqueue-accept.cjs), and the flowgate daemon (the compiled CLI, as users run it).
 *
 * Lifecycle of each: start (resolves once its queue is bound), then the workload, then
 * stop() (SIGTERM, resolves with the exit and what it printed). destroy() of the topology
 * kills whatever is left.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot, type ExitInfo, type ProcessHandle, type Topology } from '../../test/e2e/harness/index.js';
import { cliArgv } from '../../test/e2e/flowgate.js';

/** A running filter process. */
export interface FilterProcess {
  /** Short label for logs. */
  label: string;
  /** pid of the filter itself (`ip netns exec` execs in place: same pid). */
  pid: number;
  proc: ProcessHandle;
  /** flowgate only: `flowgate status` through the control socket. */
  status?: () => Promise<Record<string, unknown>>;
  /** SIGTERM, wait up to 10 s (then SIGKILL); the exit and everything printed on stdout. */
  stop(): Promise<{ exit: ExitInfo; stdout: string; stderr: string }>;
}

function handle(label: string, proc: ProcessHandle, extra: Partial<FilterProcess> = {}): FilterProcess {
  return {
    label,
    pid: proc.pid,
    proc,
    ...extra,
    async stop() {
      const exit = await proc.kill('SIGTERM', 10_000);
      return { exit, stdout: proc.stdout, stderr: proc.stderr };
    },
  };
}

/** Path of the C accept loop (built by `make -C bench/c-accept`). */
export function cAcceptPath(): string {
  return join(repoRoot(), 'bench', 'c-accept', 'accept');
}

/** Starts the C loop on queue 0 (GSO on, queue length 65536, copy range 65535). */
export async function startCLoop(topo: Topology, args: string[] = []): Promise<FilterProcess> {
  const proc = topo.spawn('gw', [cAcceptPath(), ...args, '0']);
  await proc.waitForLine(/queue 0 bound/, { timeoutMs: 10_000, stream: 'stderr' });
  return handle('c-accept', proc);
}

/** Starts scripts/nfqueue-accept.cjs with the binding installed under `prefix`. */
export async function startNpmNfqueue(topo: Topology, prefix: string): Promise<FilterProcess> {
  const script = join(repoRoot(), 'bench', 'scripts', 'nfqueue-accept.cjs');
  const proc = topo.spawn('gw', [process.execPath, script, prefix, '0']);
  await proc.waitForLine(/queue 0 bound/, { timeoutMs: 10_000, stream: 'stderr' });
  return handle('npm nfqueue', proc);
}

/** What bin/flowgate.js sets for `run`, repeated when node runs the entry directly (profiles). */
const RUN_V8_FLAGS = ['--interrupt-budget=4096'];

/** Options for startFlowgateDaemon(). */
export interface DaemonOptions {
  /** Name for the config and socket files in the topology's temporary folder. */
  name: string;
  /** node flags (e.g. --cpu-prof); when given, node runs dist/src/cli/entry.js directly. */
  nodeFlags?: string[];
}

/**
 * Writes `yaml` (plus a control socket line) and starts `flowgate run --config` in gw;
 * resolves once the queue is bound.
 */
export async function startFlowgateDaemon(topo: Topology, yaml: string, opts: DaemonOptions): Promise<FilterProcess> {
  const socket = join(topo.tmpDir, `${opts.name}.sock`);
  const config = join(topo.tmpDir, `${opts.name}.yaml`);
  writeFileSync(config, `${yaml.trimEnd()}\ncontrol: ${socket}\n`);
  const argv = opts.nodeFlags === undefined
    ? cliArgv('run', '--config', config)
    : [process.execPath, ...opts.nodeFlags, ...RUN_V8_FLAGS, join(repoRoot(), 'dist', 'src', 'cli', 'entry.js'), 'run', '--config', config];
  const proc = topo.spawn('gw', argv);
  await proc.waitForLine(/bound queue/, { timeoutMs: 20_000, stream: 'stderr' });
  const status = async () => {
    const res = await topo.exec('gw', cliArgv('status', '--socket', socket), { check: true, timeoutMs: 10_000 });
    return JSON.parse(res.stdout) as Record<string, unknown>;
  };
  return handle('flowgate', proc, { status });
}

/** iptables in the gateway namespace; throws on failure. */
export async function gwIptables(topo: Topology, ...args: string[]): Promise<void> {
  await topo.exec('gw', ['iptables', '-w', ...args], { check: true });
}

/** Removes every rule this benchmark may have added in gw (FORWARD flushed, flowgate's chains removed). */
export async function clearRules(topo: Topology): Promise<void> {
  await topo.exec('gw', cliArgv('rules', 'remove'));
  await topo.exec('gw', ['iptables', '-w', '-F', 'FORWARD']);
  await topo.exec('gw', ['ip6tables', '-w', '-F', 'FORWARD']);
}
