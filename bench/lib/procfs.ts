/**
 * What the benchmark reads about a filter process and the machine from /proc: CPU time, peak
 * and current resident memory, and a description of the machine for RESULTS.md.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';

let clockTicks: number | undefined;

/** Clock ticks per second of /proc/PID/stat times (`getconf CLK_TCK`, 100 on Linux). */
function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** utime + stime of a process (all its threads), in seconds; undefined once it is gone. */
export function cpuSeconds(pid: number): number | undefined {
  try {
    // Fields after the command name, which may itself hold spaces and parentheses.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // rest[0] is field 3 (state): utime is field 14, stime field 15.
    return (Number(rest[11]) + Number(rest[12])) / ticksPerSecond();
  } catch {
    return undefined;
  }
}

/** Resident memory of a process from /proc/PID/status, in MiB: peak (VmHWM) and now (VmRSS). */
export function memoryMb(pid: number): { peak: number; now: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    return { peak: kb('VmHWM') / 1024, now: kb('VmRSS') / 1024 };
  } catch {
    return undefined;
  }
}

/** The machine, as RESULTS.md describes it. */
export interface Machine {
  nproc: number;
  cpuModel: string;
  memoryGiB: number;
  kernel: string;
  node: string;
  hostname: string;
}

/** Describes this machine. */
export function machine(): Machine {
  let nproc = os.cpus().length;
  try {
    nproc = Number(execFileSync('nproc').toString().trim()) || nproc;
  } catch {
    // keep os.cpus()
  }
  return {
    nproc,
    cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    kernel: os.release(),
    node: process.version,
    hostname: os.hostname(),
  };
}

/** Busy and total jiffies of each CPU (/proc/stat `cpuN` lines), for busy shares over a run. */
export function cpuTimes(): Array<{ busy: number; total: number }> {
  return readFileSync('/proc/stat', 'utf8').split('\n').filter((l) => /^cpu\d+ /.test(l)).map((l) => {
    const f = l.trim().split(/\s+/).slice(1).map(Number);
    const total = f.reduce((a, x) => a + x, 0);
    return { busy: total - f[3]! - f[4]!, total };
  });
}

/** Percent busy of each CPU between two cpuTimes() snapshots. */
export function busyPercent(a: ReturnType<typeof cpuTimes>, b: ReturnType<typeof cpuTimes>): number[] {
  return b.map((x, i) => {
    const dt = x.total - (a[i]?.total ?? 0);
    return dt > 0 ? Math.round((100 * (x.busy - (a[i]?.busy ?? 0))) / dt) : 0;
  });
}

/**
 * Sets the CPU affinity of every thread of `pid` and, with `children`, of its child processes'
 * threads (nginx's workers). `cpus` is a taskset list ("0", "1", "0-1").
 */
export function pinProcess(pid: number, cpus: string, children = false): void {
  const pids = [pid];
  if (children) {
    try {
      pids.push(...readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter((s) => s !== '').map(Number));
    } catch {
      // gone
    }
  }
  for (const p of pids) execFileSync('taskset', ['-a', '-p', '-c', cpus, String(p)], { stdio: 'ignore' });
}
