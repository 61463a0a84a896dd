/** Binds an engine to a kernel queue: the few lines `run` uses, for embedders. */
import {
  ACCEPTED_BY_BINDING, ALLOWED_AFTER_HELLO, ANSWERED_BY_KERNEL, HELLO_ALLOWED, SYN_ARMED_BY_BINDING, NfQueue, M_FLAGS, M_ID, M_LEN, M_MARK, M_OFF, META_STRIDE, skbInfoOf, type QueueOptions,
} from './queue.js';
import type { RawPacket } from '../filter/engine.js';
import type { VerdictSink } from '../verdict/sink.js';
import type { FlowgateError } from '../errors.js';

/** Something that takes packets one by one (an Engine). */
export interface PacketHandler {
  handle(pkt: RawPacket): void;
}

/** M_FLAGS bits of packets the binding gave their verdict itself. */
const GIVEN_BY_BINDING = ACCEPTED_BY_BINDING | ALLOWED_AFTER_HELLO | HELLO_ALLOWED;

/**
 * Opens the queue and feeds every packet of every batch to `target`; returns the queue (close it
 * when done) and the sink to give the engine. Create the engine with `sink` first, then call
 * `bind(engine)`.
 *
 * With `acceptHandshake`, bare SYN/SYN-ACKs arrive already accepted by the binding: the engine
 * still sees them (they open flows and carry sequence numbers), and its verdict for them is
 * not sent again. The same holds for client data the binding allowed after a ClientHello, which
 * the sink's expectAfterHello (the engine calls it) asks for, and for a first ClientHello the
 * binding let on (expectHello, for the names NfQueue.allowHelloName gave it).
 */
export function attachQueue(opts: QueueOptions, onError?: (e: FlowgateError) => void):
  { sink: VerdictSink; bind(target: PacketHandler): NfQueue } {
  let queue: NfQueue | undefined;
  // Packets the binding gave their verdict (bare SYN/SYN-ACKs, a plain hello, data after a
  // hello) that the engine has not answered yet, with their M_FLAGS. It answers them while
  // handling them, so this holds the one being handled, if any.
  const given = new Map<number, number>();
  const sink: VerdictSink = {
    verdict: (id, v, mark) => {
      const flags = given.size > 0 ? given.get(id) : undefined;
      if (flags === undefined) {
        queue!.verdict(id, v, mark);
        return;
      }
      given.delete(id);
      queue!.alreadyGiven(flags, v, mark);
    },
    sendRaw: (p) => queue!.sendRaw(p),
    expectAfterHello: (key, clientLow, seq, allowMark, mask, checks) => queue!.expectAfterHello(key, clientLow, seq, allowMark, mask, checks),
    forgetAfterHello: (key, afterPacket) => queue!.forgetAfterHello(key, afterPacket),
    expectHello: (key, clientLow, seq, checks, arm) => queue!.expectHello(key, clientLow, seq, checks, arm),
    armHellosOnSyn: (arm, checks) => queue!.armHellosOnSyn(arm, checks),
    helloAnswered: (key, serverNext) => queue!.helloAnswered(key, serverNext),
    forgetHello: (key, afterPacket) => queue!.forgetHello(key, afterPacket),
    released: () => queue!.flushIfQuiet(),
  };
  return {
    sink,
    bind(target) {
      queue = NfQueue.open(opts, (b) => {
        const meta = b.meta;
        for (let i = 0; i < b.count; i++) {
          const base = i * META_STRIDE;
          const off = meta[base + M_OFF]!;
          const flags = meta[base + M_FLAGS]!;
          if (flags & GIVEN_BY_BINDING) given.set(meta[base + M_ID]!, flags);
          target.handle({
            id: meta[base + M_ID]!,
            mark: meta[base + M_MARK]!,
            data: b.data.subarray(off, off + meta[base + M_LEN]!),
            skbInfo: skbInfoOf(flags),
            synArmed: (flags & SYN_ARMED_BY_BINDING) !== 0,
            answered: (flags & ANSWERED_BY_KERNEL) !== 0,
          });
        }
      }, onError);
      return queue;
    },
  };
}
