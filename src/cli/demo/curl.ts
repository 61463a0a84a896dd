/**
 * curl in the client namespace: one or more URLs on one command line (curl reuses the
 * connection between them), each transfer reported with its status, timing, local port and
 * a classified error.
 */
import type { Sandbox } from './sandbox.js';

/** How one transfer ended. */
export type Outcome = 'ok' | 'reset' | 'timeout' | 'error';

/** One transfer of a curl run. */
export interface Transfer {
  url: string;
  outcome: Outcome;
  /** HTTP status, 0 when no response arrived. */
  status: number;
  body: string;
  /** curl's time_total, in ms. */
  ms: number;
  /** The client's TCP port, which the decision events carry as `sport`; 0 when unknown. */
  localPort: number;
  /** New connections this transfer opened (0 when it reused the previous one). */
  connects: number;
  /** curl's error message, '' on success. */
  error: string;
}

const BEGIN = '\n@@fgdemo@@';
const END = '@@end@@\n';

/** Classifies a curl exit code and message. */
export function outcomeOf(exitCode: number, message: string): Outcome {
  if (exitCode === 0) return 'ok';
  if (/reset by peer|connection reset/i.test(message)) return 'reset';
  if (exitCode === 28) return 'timeout';
  return 'error';
}

/**
 * Fetches `urls` in one curl process from the client namespace. Names resolve to `server`
 * (`--resolve`), so they still go into SNI and Host; HTTPS is verified against `cacert`.
 */
export async function curl(sb: Sandbox, urls: string[], opts: { server: string; cacert: string; maxTimeMs?: number }):
  Promise<Transfer[]> {
  const maxTime = (opts.maxTimeMs ?? 5000) / 1000;
  const argv = ['curl', '-sS', '--http1.1', '--max-time', String(maxTime), '--cacert', opts.cacert];
  const resolved = new Set<string>();
  for (const u of urls) {
    const url = new URL(u);
    const port = url.port !== '' ? url.port : url.protocol === 'https:' ? '443' : '80';
    const key = `${url.hostname}:${port}`;
    if (!resolved.has(key)) argv.push('--resolve', `${key}:${opts.server}`);
    resolved.add(key);
  }
  argv.push('-w', `${BEGIN}%{json}${END}`, ...urls);
  const res = await sb.exec('client', argv, (opts.maxTimeMs ?? 5000) * urls.length + 3000);
  const transfers: Transfer[] = [];
  let rest = res.stdout;
  for (const url of urls) {
    const b = rest.indexOf(BEGIN);
    const e = b < 0 ? -1 : rest.indexOf(END, b);
    if (b < 0 || e < 0) {
      const msg = res.stderr.trim().split('\n').pop() ?? '';
      transfers.push({ url, outcome: outcomeOf(res.code ?? 1, msg), status: 0, body: '', ms: 0, localPort: 0, connects: 0,
        error: msg || `curl exited with ${res.code ?? res.signal}` });
      continue;
    }
    const body = rest.slice(0, b);
    const info = JSON.parse(rest.slice(b + BEGIN.length, e)) as {
      http_code?: number; time_total?: number; local_port?: number; num_connects?: number; exitcode?: number; errormsg?: string | null;
    };
    rest = rest.slice(e + END.length);
    const exitCode = info.exitcode ?? 0;
    const error = exitCode === 0 ? '' : (info.errormsg ?? 'curl error');
    transfers.push({
      url, outcome: outcomeOf(exitCode, error), status: info.http_code ?? 0, body, ms: (info.time_total ?? 0) * 1000,
      localPort: info.local_port ?? 0, connects: info.num_connects ?? 0, error,
    });
  }
  return transfers;
}
