/**
 * Name resolution inside the client namespace, so that wrk sends `allowed.test` as its TLS
 * SNI and HTTP Host (wrk has no --resolve). `ip netns exec NS` bind-mounts every file in
 * /etc/netns/NS/ over the one of the same name in /etc, so a hosts file there is seen by
 * every program run in that namespace, and by nothing else.
 *
 * Lifecycle: installHosts() writes /etc/netns/<client ns>/hosts; removeHosts() deletes the
 * folder. It is removed by topology destroy, on process exit and on SIGINT/SIGTERM, and
 * folders of dead benchmark runs are removed by removeStaleHosts().
 */
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Topology } from '../../test/e2e/harness/index.js';

const NETNS_ETC = '/etc/netns';
const NAME = /^fg-client-(\d+)-[0-9a-f]+$/;

/** Makes `names` resolve to the server's addresses inside the client namespace. */
export function installHosts(topo: Topology, names: readonly string[]): void {
  const dir = join(NETNS_ETC, topo.ns.client);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'hosts'), [
    '127.0.0.1 localhost',
    '::1 localhost',
    `${topo.ip4.server} ${names.join(' ')}`,
    '',
  ].join('\n'));
  const remove = () => removeHosts(topo);
  topo.onDestroy(remove);
  process.once('exit', remove);
  // Registered after the harness's own handlers, which re-raise the signal: runs before that
  // only if installed first, so also clean up here on the synchronous path.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.prependOnceListener(signal, remove);
}

/** Deletes the client namespace's /etc/netns folder (idempotent). */
export function removeHosts(topo: Topology): void {
  rmSync(join(NETNS_ETC, topo.ns.client), { recursive: true, force: true });
}

/** Removes /etc/netns folders left by benchmark or test runs whose process is gone. */
export function removeStaleHosts(): void {
  if (!existsSync(NETNS_ETC)) return;
  for (const name of readdirSync(NETNS_ETC)) {
    const m = NAME.exec(name);
    if (m === null) continue;
    try {
      process.kill(Number(m[1]), 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') rmSync(join(NETNS_ETC, name), { recursive: true, force: true });
    }
  }
}
