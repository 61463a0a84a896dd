/**
 * Paths for child processes: the plain .mjs fixture scripts in test/e2e/harness/fixtures/,
 * and node argv for running a TypeScript file of the repository either from source (under
 * tap's TypeScript loader) or from its compiled copy in dist/.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HarnessError } from './proc.js';

const here = fileURLToPath(import.meta.url);

/** True when the harness runs from its .ts source rather than from dist/. */
export const runningFromSource = here.endsWith('.ts');

/** The repository root (the nearest directory above the harness holding package.json). */
export function repoRoot(): string {
  let dir = dirname(here);
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new HarnessError(`e2e: no package.json above ${here}`);
    dir = up;
  }
  return dir;
}

/** Absolute path of a fixture script by file name, e.g. `server.mjs` (tsc does not copy .mjs). */
export function fixturePath(name: string): string {
  const path = join(repoRoot(), 'test', 'e2e', 'harness', 'fixtures', name);
  if (!existsSync(path)) throw new HarnessError(`e2e: fixture ${path} not found`);
  return path;
}

/**
 * argv that runs a repository TypeScript file with node: `[node, ...loader, src/x.ts]` when
 * the tests run from source, `[node, dist/src/x.js]` when they run compiled. `tsPath` is
 * relative to the repository root, e.g. 'src/cli/main.ts'.
 */
export function nodeScriptArgv(tsPath: string, args: readonly string[] = []): string[] {
  const root = repoRoot();
  if (runningFromSource) {
    return [process.execPath, ...typescriptLoaderArgs(), join(root, tsPath), ...args];
  }
  return [process.execPath, join(root, 'dist', tsPath.replace(/\.ts$/, '.js')), ...args];
}

/** The node options that load TypeScript in this process (`--import X` pairs included). */
function typescriptLoaderArgs(): string[] {
  const isTs = (a: string) => a.includes('@tapjs/typescript') || a.includes('ts-node');
  const argv = process.execArgv;
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = argv[i + 1];
    if (/^--(import|loader|experimental-loader|require)$|^-r$/.test(a) && next !== undefined) {
      if (isTs(next)) out.push(a, next);
      i++;
    } else if (isTs(a)) {
      out.push(a);
    }
  }
  return out.length > 0 ? out : [...argv];
}
