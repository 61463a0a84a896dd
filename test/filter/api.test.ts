import t from 'tap';
import { Worker } from 'node:worker_threads';
import { createFilter, type FilterHandlers } from '../../src/filter/api.js';
import type { Flow } from '../../src/flow/flow.js';
import type { FlowgateEvent } from '../../src/filter/types.js';
import { NF_DROP, NF_REPEAT } from '../../src/verdict/sink.js';
import { Conversation, Feeder, RecordingSink } from '../helpers/tcp.js';

const tick = () => new Promise((r) => setImmediate(r));

function setup(handlers: FilterHandlers, options = {}) {
  const sink = new RecordingSink();
  const events: FlowgateEvent[] = [];
  const engine = createFilter(handlers, { sink, onEvent: (e) => events.push(e), options: { verifyChecksums: true, ...options } });
  const feeder = new Feeder((p) => engine.handle(p));
  const invariant = () => engine.stats.received === engine.stats.verdicts + engine.stats.held && sink.duplicates === 0;
  return { sink, events, engine, feeder, invariant };
}

const text = (b: Uint8Array) => Buffer.from(b).toString('latin1');

t.test('pause, then resume from a timer: held packets leave in order, marked allow', async (t) => {
  let paused: Flow | undefined;
  const s = setup({ data: (flow) => ((paused = flow), 'pause') });
  const c = new Conversation({ dport: 8080 });
  s.feeder.feed(...c.handshake());
  const ids = s.feeder.feed(...c.split('hello world', [5]));
  t.equal(s.engine.heldPackets, 2, 'both segments are held while paused');
  const more = s.feeder.feed(c.send('!'));
  t.equal(s.engine.heldPackets, 3, 'data arriving while paused is held too');
  await new Promise((r) => setTimeout(r, 20));
  paused!.resume('allow');
  await tick();
  t.equal(s.engine.heldPackets, 0);
  const all = [...ids, ...more].filter((id) => s.sink.verdicts.has(id));
  t.same(all.map((id) => s.sink.verdicts.get(id)!.mark), all.map(() => 0x100));
  const order = all.map((id) => s.sink.verdicts.get(id)!.order);
  t.same(order, [...order].sort((a, b) => a - b), 'released in arrival order');
  t.ok(s.invariant());
});

t.test('need more, pause, resume with need more, pause again: one cycle per request', async (t) => {
  const offsets: number[] = [];
  let flowRef: Flow | undefined;
  const s = setup({
    data: (flow, _dir, bytes, offset) => {
      flowRef = flow;
      if (!text(bytes).includes('\r\n\r\n')) return 'needMore';
      offsets.push(offset);
      return 'pause';
    },
  });
  const req = (p: string) => `GET ${p} HTTP/1.1\r\nHost: x\r\n\r\n`;
  const c = new Conversation({ dport: 80 });
  s.feeder.feed(...c.handshake());
  const [a1, a2] = s.feeder.feed(...c.split(req('/a'), [10]));
  t.equal(s.engine.heldPackets, 2, 'need more, then pause: both segments held');
  flowRef!.resume({ pass: req('/a').length });
  await tick();
  t.equal(s.sink.verdicts.get(a1!)?.verdict, NF_REPEAT, 'first request passed after resume');
  t.equal(s.sink.verdicts.get(a2!)?.verdict, NF_REPEAT);
  const [b] = s.feeder.feed(c.send(req('/b')));
  t.equal(s.engine.heldPackets, 1, 'paused again for the second request');
  flowRef!.resume('needMore');
  t.throws(() => flowRef!.resume('allow'), { code: 'ERR_NOT_PAUSED' }, 'resuming twice is a clear error');
  await tick();
  t.equal(s.sink.verdicts.has(b!), false, 'need more keeps it held');
  const [c2] = s.feeder.feed(c.send(req('/c')));
  t.equal(s.engine.heldPackets, 2, 'the handler paused again with both requests in view');
  flowRef!.resume({ pass: req('/b').length });
  await tick();
  t.equal(s.sink.verdicts.get(b!)?.verdict, NF_REPEAT, 'the second request passed');
  t.equal(s.sink.verdicts.has(c2!), false, 'the third request is paused');
  flowRef!.resume('block');
  await tick();
  t.equal(s.sink.verdicts.get(c2!)?.mark, 0x200, 'blocked: reset');
  t.same(offsets, [0, 28, 28, 56], 'four pause cycles on one flow');
  t.ok(s.invariant());
});

t.test('resume errors: not paused, after completion; complete always gets the flow', async (t) => {
  const completed: Array<[Flow, string]> = [];
  let flowRef: Flow | undefined;
  const s = setup({ data: (flow) => ((flowRef = flow), 'block'), complete: (flow, why) => completed.push([flow, why]) });
  const c = new Conversation();
  s.feeder.feed(...c.handshake());
  s.feeder.feed(c.send('x'));
  t.equal(completed.length, 1);
  t.equal(completed[0]![0], flowRef, 'complete receives the same flow handle');
  t.equal(completed[0]![1], 'blocked');
  t.throws(() => flowRef!.resume('allow'), { code: 'ERR_FLOW_COMPLETE' });

  const s2 = setup({ data: () => 'needMore' });
  const c2 = new Conversation();
  s2.feeder.feed(...c2.handshake());
  s2.feeder.feed(c2.send('x'));
  const flow2 = [...s2.engine.table.all()][0]!;
  t.throws(() => flow2.resume('allow'), { code: 'ERR_NOT_PAUSED' }, 'resuming a flow that is not paused');
});

t.test('newFlow can allow or block a flow at its SYN', async (t) => {
  const s = setup({ newFlow: (f) => (f.server.port === 22 ? 'block' : f.server.port === 53 ? 'allow' : 'inspect'), data: () => 'allow' });
  const ssh = new Conversation({ dport: 22 });
  const [syn] = s.feeder.feed(ssh.handshake()[0]!);
  t.equal(s.sink.verdicts.get(syn!)?.mark, 0x200);
  const dns = new Conversation({ dport: 53 });
  const [syn2] = s.feeder.feed(dns.handshake()[0]!);
  t.equal(s.sink.verdicts.get(syn2!)?.mark, 0x100);
  t.equal(s.engine.table.size, 0);
});

t.test('a handler that returns a Promise, and one that throws', async (t) => {
  const s = setup({ data: async (_f, _d, bytes) => (text(bytes).includes('evil') ? 'block' : 'allow') });
  const c = new Conversation();
  s.feeder.feed(...c.handshake());
  const [id] = s.feeder.feed(c.send('evil payload'));
  await tick();
  t.equal(s.sink.verdicts.get(id!)?.mark, 0x200);
  const s2 = setup({ data: () => { throw new Error('bug'); } }, { onError: 'block' });
  const c2 = new Conversation();
  s2.feeder.feed(...c2.handshake());
  const [id2] = s2.feeder.feed(c2.send('x'));
  t.equal(s2.sink.verdicts.get(id2!)?.verdict, NF_REPEAT);
  t.equal(s2.sink.verdicts.get(id2!)?.mark, 0x200);
});

t.test('analysis in a worker thread resumes the flow', async (t) => {
  const worker = new Worker(`
    const { parentPort } = require('node:worker_threads');
    parentPort.on('message', ({ id, bytes }) => {
      const s = Buffer.from(bytes).toString('latin1');
      parentPort.postMessage({ id, verdict: s.includes('forbidden') ? 'block' : 'allow' });
    });`, { eval: true });
  t.teardown(() => worker.terminate());
  const flows = new Map<string, Flow>();
  worker.on('message', ({ id, verdict }: { id: string; verdict: 'allow' | 'block' }) => flows.get(id)!.resume(verdict));
  const s = setup({
    data: (flow, _d, bytes) => {
      flows.set(flow.id, flow);
      worker.postMessage({ id: flow.id, bytes });
      return 'pause';
    },
  });
  const ok = new Conversation();
  const bad = new Conversation();
  s.feeder.feed(...ok.handshake(), ...bad.handshake());
  const [okId] = s.feeder.feed(ok.send('fine'));
  const [badId] = s.feeder.feed(bad.send('forbidden'));
  await new Promise((r) => setTimeout(r, 200));
  t.equal(s.sink.verdicts.get(okId!)?.mark, 0x100, 'allowed by the worker');
  t.equal(s.sink.verdicts.get(badId!)?.mark, 0x200, 'blocked by the worker');
  t.ok(s.invariant());
});

t.test('a paused flow past decision_timeout_ms gets on_timeout; a late resume is a clear error', async (t) => {
  let flowRef: Flow | undefined;
  const s = setup({ data: (f) => ((flowRef = f), 'pause') }, { decisionTimeoutMs: 30, onTimeout: 'block' });
  const c = new Conversation();
  s.feeder.feed(...c.handshake());
  const [id] = s.feeder.feed(c.send('x'));
  await new Promise((r) => setTimeout(r, 80));
  t.equal(s.sink.verdicts.get(id!)?.verdict, NF_REPEAT);
  t.equal(s.sink.verdicts.get(id!)?.mark, 0x200);
  t.throws(() => flowRef!.resume('allow'), { code: 'ERR_FLOW_COMPLETE' });
  void NF_DROP;
});
