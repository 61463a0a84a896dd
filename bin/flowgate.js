#!/usr/bin/env node
// The installed command: runs the compiled CLI (npm run build produces dist/).
import { setFlagsFromString } from 'node:v8';

if (process.argv[2] === 'run') {
  // The daemon's per-packet functions run a few hundred times a second on a quiet gateway, and
  // V8's default tier-up budget leaves much of that path unoptimised: measured on the gateway
  // path, a ClientHello cost 690 µs of JavaScript before its verdict with the default and
  // 350-430 µs with 1-4 KiB budgets (bench/RESULTS.md, "JavaScript time per packet in the
  // daemon"). Set before any module loads.
  setFlagsFromString('--interrupt-budget=4096');
}

import('../dist/src/cli/entry.js').catch((err) => {
  process.stderr.write(`flowgate: cannot start: ${err && err.message ? err.message : err}\n` +
    'Was it built? Run `npm run build` in the package folder.\n');
  process.exit(1);
});
