/**
 * Embedding flowgate with your own analysis in a worker thread (the "separate thread" case).
 *
 * Every outbound flow pauses on its first bytes; a worker thread looks at them and answers; the
 * main thread resumes the flow with that verdict. Run as root after `npm run build` and
 * `flowgate rules apply`:
 *
 *   sudo node dist/examples/worker-filter.js [queue]
 */
import { Worker } from 'node:worker_threads';
import { attachQueue, createFilter, type Flow } from '../src/index.js';

// The worker's code: any CPU-heavy analysis belongs here, off the packet path.
const worker = new Worker(`
  const { parentPort } = require('node:worker_threads');
  parentPort.on('message', ({ id, bytes }) => {
    const text = Buffer.from(bytes).toString('latin1');
    parentPort.postMessage({ id, verdict: /blocked\\.test/i.test(text) ? 'block' : 'allow' });
  });`, { eval: true });

const paused = new Map<string, Flow>();
worker.on('message', ({ id, verdict }: { id: string; verdict: 'allow' | 'block' }) => {
  const flow = paused.get(id);
  paused.delete(id);
  try {
    flow?.resume(verdict); // may throw ERR_FLOW_COMPLETE if the flow timed out meanwhile
  } catch (err) {
    console.error(`flow ${id}: ${(err as Error).message}`);
  }
});

const link = attachQueue({ queue: Number(process.argv[2] ?? 0) });
const engine = createFilter({
  data(flow, _direction, bytes) {
    if (bytes.length < 64) return 'needMore'; // wait for a useful amount of data
    paused.set(flow.id, flow);
    worker.postMessage({ id: flow.id, bytes });
    return 'pause';
  },
  complete(flow, why) {
    paused.delete(flow.id);
    if (why === 'blocked') console.log(`blocked ${flow.client.addr}:${flow.client.port} -> ${flow.server.addr}:${flow.server.port}`);
  },
}, { sink: link.sink, options: { decisionTimeoutMs: 2000, onTimeout: 'allow' } });
const queue = link.bind(engine);
const timer = setInterval(() => engine.tick(), 1000);

process.once('SIGINT', () => {
  engine.shutdown('allow');
  queue.close();
  clearInterval(timer);
  void worker.terminate();
});
