/**
 * Starting the real daemon inside a topology's gateway for end-to-end tests: the compiled CLI
 * (bin/flowgate.js, as users run it), its rules applied in the gateway namespace, its decision
 * events parsed from stdout and its counters read through the control socket.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Test } from 'tap';
import { readQueueStats, repoRoot, waitUntil, type ProcessHandle, type Role, type Topology } from './harness/index.js';

/** The config most tests use: allow everything but blocked.test. */
export const BLOCK_RULES = `
default: allow
rules:
  - name: no-blocked
    action: block
    domains: [blocked.test]
`;

/** A decision event as the daemon prints it. */
export interface Decision {
  type: 'decision';
  flow: string;
  app: string;
  sni?: string | null;
  host?: string | null;
  method?: string;
  path?: string;
  verdict: 'allow' | 'block';
  reason: string;
  held_packets: number;
  held_ms: number;
  [k: string]: unknown;
}

/** What `flowgate status` answers (the counters tests look at). */
export interface Status {
  received: number;
  verdicts: number;
  held: number;
  paused_flows: number;
  events: Record<string, number>;
  by_reason: Record<string, number>;
  kernel: Record<string, number>;
  [k: string]: unknown;
}

/** A running daemon. */
export interface Flowgate {
  process: ProcessHandle;
  /** The namespace it runs in: gw, or the client in host mode. */
  role: Role;
  config: string;
  socket: string;
  decisions(): Decision[];
  /**
   * The decisions once there is an event line for every decision the daemon has made: events
   * leave after their verdicts (and are gathered for up to 10 ms), so right after a client
   * finished, the last one may still be on its way.
   */
  settledDecisions(): Promise<Decision[]>;
  waitForDecision(pred: (d: Decision) => boolean, timeoutMs?: number): Promise<Decision>;
  /** `flowgate status` through the control socket. */
  status(): Promise<Status>;
  /** `flowgate flows`. */
  flows(): Promise<{ count: number; flows: Array<Record<string, unknown>> }>;
  /** SIGTERM and wait; resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** argv of the compiled CLI. */
export function cliArgv(...args: string[]): string[] {
  return [process.execPath, join(repoRoot(), 'bin', 'flowgate.js'), ...args];
}

/** Applies the gateway rules in the topology's gw namespace (removed with the namespace). */
export async function applyRules(topo: Topology, extra: string[] = []): Promise<void> {
  await topo.exec('gw', cliArgv('rules', 'apply', ...extra), { check: true });
}

/**
 * Writes `yaml` (a control socket line is added) and starts `flowgate run` in gw (or `role`, for
 * host mode); resolves once the queue is bound. `argv` builds the command line (default:
 * bin/flowgate.js, as installed).
 */
export async function startFlowgate(topo: Topology, yaml: string, name = 'flowgate',
  argv: (...args: string[]) => string[] = cliArgv, role: Role = 'gw'): Promise<Flowgate> {
  const socket = join(topo.tmpDir, `${name}.sock`);
  const config = join(topo.tmpDir, `${name}.yaml`);
  writeFileSync(config, `${yaml}\ncontrol: ${socket}\n`);
  const proc = topo.spawn(role, argv('run', '--config', config));
  const decisions: Decision[] = [];
  proc.on('line', (line: string, stream: string) => {
    if (stream !== 'stdout') return;
    try {
      const ev = JSON.parse(line) as { type?: string };
      if (ev.type === 'decision') decisions.push(ev as Decision);
    } catch { /* not an event */ }
  });
  await proc.waitForLine(/bound queue/, { timeoutMs: 15000, stream: 'stderr' });
  const ask = async (what: 'status' | 'flows') => {
    const res = await topo.exec(role, cliArgv(what, '--socket', socket), { check: true });
    return JSON.parse(res.stdout);
  };
  return {
    process: proc,
    role,
    config,
    socket,
    decisions: () => decisions,
    settledDecisions: async () => {
      // The engine counts a decision when it emits its event; the line follows within ~10 ms.
      await waitUntil(async () => decisions.length >= ((await ask('status')) as Status & { decisions: number }).decisions,
        { timeoutMs: 5000, what: 'an event line for every decision' });
      return decisions;
    },
    waitForDecision: async (pred, timeoutMs = 5000) => {
      let found: Decision | undefined;
      await waitUntil(() => (found = decisions.find(pred)) !== undefined, { timeoutMs, what: 'a decision event' });
      return found!;
    },
    status: () => ask('status'),
    flows: () => ask('flows'),
    stop: async (signal = 'SIGTERM') => (await proc.kill(signal, 10000)).code,
  };
}

/**
 * Nothing left behind: every packet got a verdict and the kernel queue (in flowgate's namespace)
 * has none waiting. Resolves with the settled status.
 */
export async function assertSettled(t: Test, topo: Topology, fg: Flowgate): Promise<Status> {
  const s = await waitUntil(async () => {
    const st = await fg.status();
    return st.held === 0 && st.received === st.verdicts ? st : undefined;
  }, { timeoutMs: 5000, what: 'received == verdicts and nothing held' }) as Status;
  t.ok(s.received > 0, `the daemon saw packets (${s.received})`);
  t.equal(s.received, s.verdicts, 'every packet received got one verdict');
  t.equal(s.held, 0, 'nothing held');
  // The binding's own count: its handshake accepts plus the engine's verdicts, one per packet.
  const k = s.kernel;
  t.equal(k.verdicts, k.received, `the binding sent one verdict per packet read (${k.verdicts})`);
  t.equal(k.kernelErrors, 0, 'the kernel rejected no verdict (none was given twice)');
  t.equal(k.handshakeOverrides, 0, 'the engine wanted no handshake the binding accepted dropped');
  t.equal(k.afterHelloOverrides, 0, 'the engine wanted no packet the binding allowed after a hello dropped');
  t.equal(k.helloOverrides, 0, 'the engine decided every hello the binding let on as the binding did');
  const q = await waitUntil(async () => {
    const stats = await readQueueStats(topo, fg.role);
    return stats.length > 0 && stats.every((x) => x.waiting === 0) ? stats : undefined;
  }, { timeoutMs: 3000, what: 'kernel queue waiting = 0' }) as Array<{ waiting: number }>;
  t.equal(q[0]!.waiting, 0, '/proc/net/netfilter/nfnetlink_queue shows 0 waiting');
  return s;
}
