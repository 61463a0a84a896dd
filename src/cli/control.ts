/**
 * The control socket behind `flowgate status` and `flowgate flows`: a Unix socket (mode 0600)
 * that answers one JSON document per request line ("status" or "flows") and closes.
 */
import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import { FlowgateError } from '../errors.js';

/** What the control socket can be asked. */
export type ControlRequest = 'status' | 'flows';

/** Serves answers computed by `answer` on a Unix socket. Resolves once listening. */
export async function serveControl(socketPath: string,
  answer: (req: ControlRequest) => unknown | Promise<unknown>): Promise<net.Server> {
  fs.mkdirSync(path.dirname(socketPath), { recursive: true, mode: 0o755 });
  try {
    fs.unlinkSync(socketPath); // a stale socket from a killed daemon
  } catch { /* absent */ }
  const server = net.createServer((conn) => {
    let buf = '';
    conn.setEncoding('utf8');
    conn.on('error', () => {});
    conn.on('data', (chunk: string) => {
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl < 0 && buf.length < 64) return;
      const req = buf.slice(0, nl < 0 ? undefined : nl).trim();
      const reply = (body: unknown) => conn.end(JSON.stringify(body) + '\n');
      const fail = (err: unknown) => reply({ error: err instanceof Error ? err.message : String(err) });
      if (req !== 'status' && req !== 'flows') {
        reply({ error: `unknown request "${req.slice(0, 20)}"; ask "status" or "flows"` });
        return;
      }
      try {
        Promise.resolve(answer(req)).then(reply, fail);
      } catch (err) {
        fail(err);
      }
    });
  });
  const oldMask = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => resolve());
    });
  } catch (err) {
    throw new FlowgateError('ERR_CONTROL', `cannot listen on control socket ${socketPath}: ${(err as Error).message}`,
      { cause: err });
  } finally {
    process.umask(oldMask);
  }
  fs.chmodSync(socketPath, 0o600);
  server.unref();
  return server;
}

/** Asks a running daemon; rejects with a clear error when nothing listens. */
export function askControl(socketPath: string, req: ControlRequest, timeoutMs = 3000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const conn = net.connect(socketPath);
    let buf = '';
    const timer = setTimeout(() => {
      conn.destroy();
      reject(new FlowgateError('ERR_CONTROL', `no answer from ${socketPath} within ${timeoutMs} ms`));
    }, timeoutMs);
    conn.setEncoding('utf8');
    conn.on('connect', () => conn.write(`${req}\n`));
    conn.on('data', (d: string) => (buf += d));
    conn.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new FlowgateError('ERR_CONTROL', err.code === 'ENOENT' || err.code === 'ECONNREFUSED'
        ? `flowgate is not running (no control socket at ${socketPath})`
        : `cannot reach ${socketPath}: ${err.message}`, { cause: err }));
    });
    conn.on('end', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(buf));
      } catch {
        reject(new FlowgateError('ERR_CONTROL', `bad answer from ${socketPath}`));
      }
    });
  });
}
