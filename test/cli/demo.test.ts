/**
 * `flowgate demo` as users run it: the compiled CLI (bin/flowgate.js), as root. It must tell
 * its story, pass, and leave nothing behind: on success, on SIGINT midway, and refuse politely
 * without root.
 */
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('no package.json above the test');
    dir = up;
  }
  return dir;
}

const BIN = join(repoRoot(), 'bin', 'flowgate.js');

interface Run {
  pid: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}


/** Runs `flowgate demo`; `onStdout` sees the output as it grows and may signal the child. */
function demo(opts: { uid?: number; gid?: number; onStdout?: (all: string, pid: number) => void } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    // As from a user's shell: no colour, and none of the NODE_OPTIONS hooks tap adds to every
    // child (they write into .tap/, which a non-root demo may not). `env` execs node: same pid.
    const child = spawn('env', ['-u', 'NODE_OPTIONS', process.execPath, BIN, 'demo'], {
      stdio: ['ignore', 'pipe', 'pipe'], uid: opts.uid, gid: opts.gid, env: { ...process.env, NO_COLOR: '1' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      opts.onStdout?.(stdout, child.pid!);
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ pid: child.pid!, code, signal, stdout, stderr, ms: Date.now() - started });
    });
  });
}

/** The demo namespaces of one run that still exist. */
function namespacesOf(pid: number): string[] {
  const out = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout ?? '';
  return out.split('\n').map((l) => l.trim().split(/\s+/)[0] ?? '').filter((n) => n.startsWith(`fgdemo-${pid}-`));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Paths and pids the narrative mentions, to check they are gone afterwards. */
function mentioned(stdout: string): { dir?: string; daemonPid?: number } {
  const dir = /(\/\S*fgdemo-\d+-[A-Za-z0-9]+)\/demo\.yaml/.exec(stdout)?.[1];
  const pid = /flowgate running in the gateway \(pid (\d+)/.exec(stdout)?.[1];
  return { dir, daemonPid: pid !== undefined ? Number(pid) : undefined };
}

t.test('demo: exit 0, narrates every outcome and decision, leaves nothing behind', async (t) => {
  const r = await demo();
  const out = r.stdout;
  t.equal(r.code, 0, `exit 0${r.code !== 0 ? `\n${out}\n${r.stderr}` : ''}`);
  t.ok(r.ms < 20_000, `finished in ${r.ms} ms (< 20 s)`);
  t.equal(r.stderr, '', 'nothing on stderr');

  t.match(out, /Building the sandbox/);
  t.match(out, new RegExp(`fgdemo-${r.pid}-client`), 'namespace names carry the pid');
  t.match(out, /✔ http:\/\/allowed\.test\/\s+200 "hello from allowed\.test"/, 'HTTP allowed: 200');
  t.match(out, /✔ https:\/\/allowed\.test\/\s+200 "hello from allowed\.test"/, 'HTTPS allowed: 200');
  t.match(out, /ALLOW\s+http GET allowed\.test\/\s+rule:allowed/, 'HTTP allow decision shown');
  t.match(out, /ALLOW\s+tls\s+allowed\.test\s+rule:allowed/, 'TLS allow decision shown');

  for (const scheme of ['http', 'https']) {
    const m = new RegExp(`✔ ${scheme}://blocked\\.test/\\s+connection reset\\s+([\\d.]+) ms\\s+the origin never saw it`).exec(out);
    t.ok(m, `${scheme} blocked: reset, never reached the origin`);
    if (m) t.ok(Number(m[1]) < 1000, `${scheme} blocked: fast (${m[1]} ms)`);
  }
  t.match(out, /BLOCK\s+http GET blocked\.test\/\s+rule:no-blocked/, 'HTTP block decision shown');
  t.match(out, /BLOCK\s+tls\s+blocked\.test\s+rule:no-blocked/, 'TLS block decision shown');

  for (const scheme of ['http', 'https']) {
    const m = new RegExp(`✔ ${scheme}://slow\\.test/\\s+200 "hello from slow\\.test"\\s+(\\d+) ms\\s+waited for the policy`).exec(out);
    t.ok(m, `${scheme} slow: allowed after waiting`);
    if (m) t.ok(Number(m[1]) >= 400, `${scheme} slow: took ${m[1]} ms`);
  }
  const slowHeld = [...out.matchAll(/ALLOW\s+(?:http GET slow\.test\/|tls\s+slow\.test)\s+module:looked it up\s+held (\d+) pkts? for (\d+) ms/g)];
  t.equal(slowHeld.length, 2, 'two slow decisions from the module');
  for (const m of slowHeld) {
    t.ok(Number(m[1]) >= 1, `held ${m[1]} packets`);
    t.ok(Number(m[2]) >= 400, `held for ${m[2]} ms`);
  }
  t.match(out, /paused \d+ ms while the policy module thought, then resumed/);

  t.match(out, /✔ http:\/\/allowed\.test\/one \+ \/two\s+200, 200, one connection/, 'keep-alive: two 200s on one connection');
  const one = /ALLOW\s+http GET allowed\.test\/one\s+.*flow (\S+)/.exec(out);
  const two = /ALLOW\s+http GET allowed\.test\/two\s+.*flow (\S+)/.exec(out);
  t.ok(one && two, 'a decision for each request');
  if (one && two) t.equal(one[1], two[1], 'both decisions on the same flow');
  t.match(out, /two decisions on one flow/);

  const c = /✔ (\d+) packets received, (\d+) verdicts, 0 held, 0 flows paused, 0 waiting in the kernel queue/.exec(out);
  t.ok(c, 'counters line: settled');
  if (c) {
    t.equal(c[1], c[2], 'received == verdicts');
    t.ok(Number(c[1]) > 0, 'packets went through the queue');
  }
  t.match(out, /Cleaning up/);
  t.match(out, /flowgate stopped \(exit 0\)/);
  t.match(out, /✔ Demo passed in [\d.]+ s\./);

  t.same(namespacesOf(r.pid), [], 'no fgdemo namespace of this run remains');
  const { dir, daemonPid } = mentioned(out);
  t.ok(dir !== undefined && !existsSync(dir), `temporary directory removed (${dir})`);
  t.ok(daemonPid !== undefined && !alive(daemonPid), 'the daemon is gone');
});

t.test('demo: SIGINT midway cleans up everything', async (t) => {
  let sent = false;
  const r = await demo({
    onStdout: (all, pid) => {
      // Midway: the daemon runs and the first client answers have been shown.
      if (!sent && /✔ https:\/\/allowed\.test\//.test(all)) {
        sent = true;
        process.kill(pid, 'SIGINT');
      }
    },
  });
  t.ok(sent, 'SIGINT was sent midway');
  t.equal(r.code, 130, 'exit 130 (interrupted)');
  t.match(r.stdout, /Interrupted: cleaning up/);
  t.match(r.stdout, /Cleaned up: nothing left behind\./);
  t.notMatch(r.stdout, /Demo passed/);
  t.same(namespacesOf(r.pid), [], 'no fgdemo namespace of this run remains');
  const { dir, daemonPid } = mentioned(r.stdout);
  t.ok(dir !== undefined && !existsSync(dir), `temporary directory removed (${dir})`);
  t.ok(daemonPid !== undefined && !alive(daemonPid), 'the daemon is gone');
});

t.test('demo: SIGINT while the sandbox is being built cleans up too', async (t) => {
  let sent = false;
  const r = await demo({
    onStdout: (all, pid) => {
      if (!sent && /client\s+fgdemo-/.test(all)) {
        sent = true;
        process.kill(pid, 'SIGINT');
      }
    },
  });
  t.ok(sent, 'SIGINT was sent during the build');
  t.equal(r.code, 130);
  t.match(r.stdout, /Cleaned up: nothing left behind\./);
  t.same(namespacesOf(r.pid), []);
});

t.test('demo without root: one clear line, exit 2', async (t) => {
  const r = await demo({ uid: 65534, gid: 65534 });
  t.equal(r.code, 2);
  t.equal(r.stderr, 'flowgate demo needs root (network namespaces and iptables): run it with sudo\n');
  t.equal(r.stdout, '');
});
