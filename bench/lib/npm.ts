/**
 * The npm `nfqueue` binding (0.3.2), installed for the benchmark only, into a folder of its
 * own outside the repository (never into node_modules/ or package.json). It is a nan addon
 * over libnetfilter_queue: building it needs the libnetfilter-queue-dev headers and a
 * compiler; when the install fails the reason is reported and its configuration skipped.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { execArgv } from '../../test/e2e/harness/index.js';

/** Where the binding is installed (reused by later runs when already built). */
export const NFQUEUE_PREFIX = '/tmp/flowgate-bench-nfqueue-0.3.2';

/** Result of making the binding available. */
export interface NpmBinding {
  ok: boolean;
  /** The install folder when ok, else why not. */
  detail: string;
}

function built(prefix: string): boolean {
  return existsSync(join(prefix, 'node_modules', 'nfqueue', 'build', 'Release', 'nfqueue.node'));
}

/** The first lines of npm's output that say what went wrong. */
function reason(out: string): string {
  const lines = out.split('\n').map((l) => l.replace(/^npm (error|ERR!)\s*/, '').trim()).filter((l) => l !== '');
  const key = lines.filter((l) => /fatal error|error:|not found|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|E404|gyp ERR! stack Error/i.test(l));
  return (key.length > 0 ? key.slice(0, 3) : lines.slice(-3)).join(' / ').slice(0, 500);
}

/** Installs nfqueue@0.3.2 with npm into NFQUEUE_PREFIX unless already built there. */
export async function ensureNpmNfqueue(): Promise<NpmBinding> {
  if (built(NFQUEUE_PREFIX)) return { ok: true, detail: `installed in ${NFQUEUE_PREFIX} (reused)` };
  const res = await execArgv(['npm', 'install', '--prefix', NFQUEUE_PREFIX, '--no-audit', '--no-fund', '--no-save', 'nfqueue@0.3.2'],
    { timeoutMs: 240_000 });
  if (built(NFQUEUE_PREFIX)) return { ok: true, detail: `installed in ${NFQUEUE_PREFIX} by \`npm install --prefix ${NFQUEUE_PREFIX} nfqueue@0.3.2\`` };
  const why = res.timedOut ? 'npm install timed out after 240 s' : reason(`${res.stdout}\n${res.stderr}`);
  const hint = /libnetfilter_queue/.test(why) ? ' (its headers come from the Debian package libnetfilter-queue-dev)' : '';
  return { ok: false, detail: `did not install (exit ${res.code}): ${why}${hint}` };
}
