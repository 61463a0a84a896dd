import t from 'tap';
import { Writable } from 'node:stream';
import { EventWriter, MAX_BATCH_EVENTS, MAX_QUEUED_EVENTS } from '../../src/cli/events.js';
import type { FlowgateEvent } from '../../src/filter/types.js';

/** A decision event; only the fields the writer formats matter here. */
function decision(n: number): FlowgateEvent {
  return {
    type: 'decision', ts: '2026-11-26T00:00:00.000Z', flow: `f${n}`, src: '10.0.0.1', sport: 1000 + n, dst: '10.0.0.2',
    dport: 443, app: 'tls', sni: 'allowed.test', verdict: 'allow', reason: 'default', held_packets: 1, held_ms: 0,
  };
}

/** A stream recording each write; `accept` false makes write() report congestion. */
function sink(accept = true): { out: Writable; writes: string[] } {
  const writes: string[] = [];
  const out = new Writable({ highWaterMark: accept ? 1 << 20 : 1, write(chunk: Buffer, _enc, cb) {
    writes.push(chunk.toString());
    if (accept) cb();
    else setImmediate(cb); // a slow reader: the write completes later, write() reports congestion
  } });
  return { out, writes };
}

const tick = () => new Promise((r) => setImmediate(r));

t.test('the events of one turn of the event loop leave in one write, in order, one JSON line each', async (t) => {
  const { out, writes } = sink();
  const w = new EventWriter(out);
  for (let i = 0; i < 5; i++) w.write(decision(i));
  t.equal(writes.length, 0, 'nothing written synchronously');
  await tick();
  await tick();
  t.equal(writes.length, 1, 'one write for five events');
  const lines = writes[0]!.trimEnd().split('\n').map((l) => JSON.parse(l) as { flow: string });
  t.same(lines.map((l) => l.flow), ['f0', 'f1', 'f2', 'f3', 'f4']);
  t.equal(w.written, 5);
  w.write(decision(5));
  w.flush();
  await tick();
  t.equal(writes.length, 2, 'flush() writes at once (used before exit)');
  t.equal(w.written, 6);
  w.flush();
  t.equal(writes.length, 2, 'flushing nothing writes nothing');
});

t.test('with a coalescing window, the lines of several turns leave in one write; a full batch leaves at once', async (t) => {
  const { out, writes } = sink();
  const w = new EventWriter(out, 'json', 30);
  w.write(decision(0));
  await tick();
  w.write(decision(1));
  await tick();
  t.equal(writes.length, 0, 'nothing written within the window');
  await new Promise((r) => setTimeout(r, 60));
  t.equal(writes.length, 1, 'one write for both, after the window');
  t.equal(writes[0]!.trimEnd().split('\n').length, 2);
  let n = 0;
  while (writes.length === 1) w.write(decision(n++));
  t.equal(writes[1]!.trimEnd().split('\n').length, MAX_BATCH_EVENTS, `a full batch was written at once (${writes[1]!.length} chars)`);
  w.flush();
  t.equal(w.written, n + 2, 'every event written');
});

t.test('an event is formatted when it leaves, not when it is written (the packet path does not wait for JSON)', async (t) => {
  const { out, writes } = sink();
  const w = new EventWriter(out, 'json', 30);
  let formatted = 0;
  const e = Object.assign(decision(0), { toJSON(this: object) {
    formatted++;
    return { ...this, toJSON: undefined };
  } });
  w.write(e);
  t.equal(formatted, 0, 'write() only gathers');
  w.flush();
  t.equal(formatted, 1, 'flush() formats');
  t.equal((JSON.parse(writes[0]!) as { flow: string }).flow, 'f0');
});

t.test('a congested stream queues events up to the cap and counts the rest as dropped', async (t) => {
  const { out } = sink(false);
  const w = new EventWriter(out);
  w.write(decision(0));
  w.flush(); // the stream reports congestion: later events queue
  for (let i = 0; i < MAX_QUEUED_EVENTS + 3; i++) w.write(decision(i));
  t.equal(w.dropped, 3, 'past the cap, events are dropped and counted');
  await new Promise((r) => out.once('drain', r));
  await tick();
  t.equal(w.dropped, 3);
});

t.test('a broken stream: events are counted as dropped, nothing throws', async (t) => {
  const out = new Writable({ write(_c, _e, cb) {
    cb(new Error('EPIPE'));
  } });
  const w = new EventWriter(out);
  w.write(decision(0));
  w.flush();
  await tick();
  w.write(decision(1));
  t.equal(w.dropped, 1, 'after the error, events are dropped');
});
