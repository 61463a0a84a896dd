import { mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { parseConfig } from '../../src/policy/config.js';
import { listFiles, watchLists } from '../../src/policy/watch.js';

const dir = mkdtempSync(join(tmpdir(), 'flowgate-watch-'));
writeFileSync(join(dir, 'a.txt'), 'a.test\n');
writeFileSync(join(dir, 'b.txt'), 'b.test\n');
writeFileSync(join(dir, 'other.txt'), 'unwatched\n');
const yaml = 'rules:\n  - {name: a, action: block, lists: [a.txt, b.txt]}\n  - {name: b, action: block, lists: [a.txt]}\n';
const { config } = parseConfig(yaml, join(dir, 'c.yaml'));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('list files are listed once each', async (t) => {
  t.same(listFiles(config!), [join(dir, 'a.txt'), join(dir, 'b.txt')]);
});

t.test('a burst of writes and a rename-over report once, after the quiet time', async (t) => {
  const calls: string[][] = [];
  const watcher = watchLists(config!, (paths) => calls.push(paths.sort()), { debounceMs: 300 });
  t.teardown(() => watcher.close());
  await sleep(50);
  writeFileSync(join(dir, 'other.txt'), 'still unwatched\n');
  await sleep(500);
  t.same(calls, [], 'other files in the folder are ignored');
  writeFileSync(join(dir, 'a.txt'), 'a.test\nmore.test\n');
  await sleep(20);
  writeFileSync(join(dir, 'b.tmp'), 'b.test\nnew.test\n');
  renameSync(join(dir, 'b.tmp'), join(dir, 'b.txt'));
  await sleep(30);
  t.same(calls, [], 'nothing before the quiet time');
  await sleep(600);
  t.same(calls, [[join(dir, 'a.txt'), join(dir, 'b.txt')]]);
  watcher.close();
  writeFileSync(join(dir, 'a.txt'), 'after close\n');
  await sleep(500);
  t.equal(calls.length, 1, 'nothing after close');
});
