#!/usr/bin/env node
// The installed command: runs the compiled CLI (npm run build produces dist/).
import('../dist/src/cli/entry.js').catch((err) => {
  process.stderr.write(`flowgate: cannot start: ${err && err.message ? err.message : err}\n` +
    'Was it built? Run `npm run build` in the package folder.\n');
  process.exit(1);
});
