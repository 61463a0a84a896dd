/** Binds an engine to a kernel queue: the few lines `run` uses, for embedders. */
import { NfQueue, M_FLAGS, M_ID, M_LEN, M_MARK, M_OFF, META_STRIDE, type QueueOptions } from './queue.js';
import type { RawPacket } from '../filter/engine.js';
import type { VerdictSink } from '../verdict/sink.js';
import type { FlowgateError } from '../errors.js';

/** Something that takes packets one by one (an Engine). */
export interface PacketHandler {
  handle(pkt: RawPacket): void;
}

/**
 * Opens the queue and feeds every packet of every batch to `target`; returns the queue (close it
 * when done) and the sink to give the engine. Create the engine with `sink` first, then call
 * `bind(engine)`.
 */
export function attachQueue(opts: QueueOptions, onError?: (e: FlowgateError) => void):
  { sink: VerdictSink; bind(target: PacketHandler): NfQueue } {
  let queue: NfQueue | undefined;
  const sink: VerdictSink = {
    verdict: (id, v, mark) => queue!.verdict(id, v, mark),
    sendRaw: (p) => queue!.sendRaw(p),
  };
  return {
    sink,
    bind(target) {
      queue = NfQueue.open(opts, (b) => {
        const meta = b.meta;
        for (let i = 0; i < b.count; i++) {
          const base = i * META_STRIDE;
          const off = meta[base + M_OFF]!;
          target.handle({
            id: meta[base + M_ID]!,
            mark: meta[base + M_MARK]!,
            data: b.data.subarray(off, off + meta[base + M_LEN]!),
            skbInfo: meta[base + M_FLAGS]! & 0xff,
          });
        }
      }, onError);
      return queue;
    },
  };
}
