/**
 * Packets flowgate sends on its own when it blocks a flow: an RST to the server, so it does not
 * wait for data that never comes, and what the client is told (a 403 page, a TLS alert).
 */
import { buildTcpPacket } from '../packet/build.js';
import { ACK, FIN, PSH, RST } from '../packet/types.js';
import type { Flow } from '../flow/flow.js';

/**
 * An RST from the client's address to the server at `seq`, the first byte the server has not
 * received. Linux resets at once only when the sequence number is exactly the one it expects
 * (RFC 5961 section 3.2), which is why it is the first held byte and not any in-window value.
 */
export function buildResetToServer(flow: Flow, seq: number): Uint8Array {
  return buildTcpPacket({
    src: flow.clientAddr, dst: flow.serverAddr, sport: flow.clientPort, dport: flow.serverPort,
    seq, ack: flow.c2s.lastAck ?? 0, flags: RST | ACK, window: 0, ttl: 64,
  });
}

/** The body of the block page: short, no external resources. */
export const BLOCK_PAGE_BODY = '<!doctype html><title>Blocked</title><h1>403 Blocked</h1>' +
  '<p>This site is blocked by the network\'s filter (flowgate).</p>\n';

/** Data from the server's address to the client, where the client expects the server's next byte. */
function toClient(flow: Flow, payload: Uint8Array, flags: number): Uint8Array {
  return buildTcpPacket({
    src: flow.serverAddr, dst: flow.clientAddr, sport: flow.serverPort, dport: flow.clientPort,
    // The client's ACK says which server byte it expects next; its own next byte is ours to ACK.
    seq: flow.c2s.lastAck ?? 0, ack: flow.c2s.sndNxt ?? 0, flags, window: 0, ttl: 64, payload,
  });
}

/** An HTTP 403 response with Connection: close and a FIN, for `block_action: page`. */
export function buildBlockPage(flow: Flow): Uint8Array {
  const body = Buffer.from(BLOCK_PAGE_BODY, 'latin1');
  const head = 'HTTP/1.1 403 Forbidden\r\nContent-Type: text/html; charset=utf-8\r\n' +
    `Content-Length: ${body.length}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n`;
  return toClient(flow, Buffer.concat([Buffer.from(head, 'latin1'), body]), PSH | ACK | FIN);
}

/** A fatal TLS access_denied (49) alert record, for `tls_alert: true`. */
export function buildTlsAlert(flow: Flow): Uint8Array {
  return toClient(flow, Uint8Array.of(21, 3, 3, 0, 2, 2, 49), PSH | ACK);
}
