/** The RST flowgate sends to the server of a blocked flow, so it does not wait for data that never comes. */
import { buildTcpPacket } from '../packet/build.js';
import { ACK, RST } from '../packet/types.js';
import type { Flow } from '../flow/flow.js';

/**
 * An RST from the client's address to the server at `seq`, the first byte the server has not
 * received. Linux resets at once only when the sequence number is exactly the one it expects
 * (RFC 5961 section 3.2), which is why it is the first held byte and not any in-window value.
 */
export function buildResetToServer(flow: Flow, seq: number): Uint8Array {
  return buildTcpPacket({
    src: flow.client.addr, dst: flow.server.addr, sport: flow.client.port, dport: flow.server.port,
    seq, ack: flow.c2s.lastAck ?? 0, flags: RST | ACK, window: 0, ttl: 64,
  });
}
