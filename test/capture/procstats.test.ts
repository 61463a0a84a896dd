import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { parseQueueProcStats, readQueueProcStats } from '../../src/capture/procstats.js';

// Captured from kernel 6.18 with queues 65535 (copyRange 128) and 3 bound; the kernel prints
// "%5u %6u %5u %1u %5u %5u %5u %8u %2d" (nfnetlink_queue.c seq_show).
const SAMPLE = '65535 2380041056     0 2   128     0     0        0  1\n    3  18132     0 2 65531     0     0        0  1\n';

t.test('parses every column of a real table', async (t) => {
  t.same(parseQueueProcStats(SAMPLE), [
    { queue: 65535, portId: 2380041056, waiting: 0, copyMode: 2, copyRange: 128, queueDropped: 0, userDropped: 0, lastId: 0, constant: 1 },
    { queue: 3, portId: 18132, waiting: 0, copyMode: 2, copyRange: 65531, queueDropped: 0, userDropped: 0, lastId: 0, constant: 1 },
  ]);
});

t.test('busy counters land in the right fields', async (t) => {
  const [row] = parseQueueProcStats('    7   4242    12 2 65531     3     5  4000000000  1\n');
  t.match(row, { queue: 7, portId: 4242, waiting: 12, queueDropped: 3, userDropped: 5, lastId: 4000000000 });
});

t.test('never throws; skips what is not a row', async (t) => {
  t.same(parseQueueProcStats(''), []);
  t.same(parseQueueProcStats('\n\n'), []);
  t.same(parseQueueProcStats('garbage\n1 2 3\n1 2 3 4 5 6 7 8 x\n-1 2 3 4 5 6 7 8 1\n'), []);
  t.equal(parseQueueProcStats('1 2 3 4 5 6 7 8 9\nnope\n').length, 1, 'good rows around bad ones survive');
  t.equal(parseQueueProcStats('1 2 3 4 5 6 7 8 9').length, 1, 'no trailing newline');
});

t.test('reads a file, filters by queue, and an absent file is no queues', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fg-procstats-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'nfnetlink_queue');
  writeFileSync(file, SAMPLE);
  t.equal((await readQueueProcStats(undefined, file)).length, 2);
  t.match(await readQueueProcStats(3, file), [{ queue: 3, copyRange: 65531 }]);
  t.same(await readQueueProcStats(9, file), []);
  t.same(await readQueueProcStats(undefined, join(dir, 'missing')), []);
  t.ok(Array.isArray(await readQueueProcStats()), 'the real file (or none) reads without error');
});
