/**
 * Per-queue kernel counters from /proc/net/netfilter/nfnetlink_queue (per network namespace):
 * how many packets wait for a verdict, and how many the kernel dropped and why.
 */
import { readFile } from 'node:fs/promises';

/** Where the kernel publishes the table; one line per bound queue. */
export const QUEUE_PROC_PATH = '/proc/net/netfilter/nfnetlink_queue';

/** One line of the table, in the kernel's column order. */
export interface QueueProcStats {
  /** Queue number. */
  queue: number;
  /** Netlink port id of the socket bound to it. */
  portId: number;
  /** Packets waiting for a verdict right now; 0 when the daemon is idle. */
  waiting: number;
  /** 0 none, 1 meta only, 2 whole packet (NFQNL_COPY_*). */
  copyMode: number;
  /** Bytes of each packet copied to userspace. */
  copyRange: number;
  /** Packets dropped because the queue was full (maxLen). */
  queueDropped: number;
  /** Packets dropped because the kernel could not send them to the socket (receive buffer full). */
  userDropped: number;
  /** Last packet id handed out. */
  lastId: number;
  /** Trailing column the kernel always prints as 1. */
  constant: number;
}

const FIELDS = [
  'queue', 'portId', 'waiting', 'copyMode', 'copyRange', 'queueDropped', 'userDropped', 'lastId', 'constant',
] as const;

/** Parses the table's text. Never throws: lines that do not have nine unsigned numbers are skipped. */
export function parseQueueProcStats(text: string): QueueProcStats[] {
  const out: QueueProcStats[] = [];
  for (const line of text.split('\n')) {
    const cols = line.trim().split(/\s+/);
    if (cols.length < FIELDS.length || !cols.slice(0, FIELDS.length).every((c) => /^\d+$/.test(c))) continue;
    const row = {} as Record<(typeof FIELDS)[number], number>;
    FIELDS.forEach((name, i) => {
      row[name] = Number(cols[i]);
    });
    out.push(row);
  }
  return out;
}

/**
 * Reads the current namespace's table, optionally only `queue`. No queue bound (or the
 * nfnetlink_queue module not loaded, so no file) gives an empty list.
 */
export async function readQueueProcStats(queue?: number, path: string = QUEUE_PROC_PATH): Promise<QueueProcStats[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const rows = parseQueueProcStats(text);
  return queue === undefined ? rows : rows.filter((r) => r.queue === queue);
}
