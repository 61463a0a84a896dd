/** systemd's notify protocol (sd_notify): READY=1, WATCHDOG=1, STOPPING=1 on $NOTIFY_SOCKET. */
import { notifySocket } from '../capture/queue.js';

/** Sends a notify message when started by systemd with Type=notify; a no-op otherwise. Never throws. */
export function sdNotify(message: string, env: NodeJS.ProcessEnv = process.env): boolean {
  const path = env.NOTIFY_SOCKET;
  if (path === undefined || path === '') return false;
  try {
    notifySocket(path, message);
    return true;
  } catch {
    return false;
  }
}

/** Watchdog interval: half of WATCHDOG_USEC, in ms, or undefined when systemd asked for none. */
export function watchdogIntervalMs(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const usec = Number(env.WATCHDOG_USEC);
  if (!Number.isFinite(usec) || usec <= 0) return undefined;
  if (env.WATCHDOG_PID !== undefined && Number(env.WATCHDOG_PID) !== process.pid) return undefined;
  return Math.max(100, Math.floor(usec / 2000));
}
