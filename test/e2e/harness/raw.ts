/**
 * A raw TCP client for split and disorder tests: the client namespace writes given chunks
 * one by one with TCP_NODELAY and pauses, so each chunk leaves as its own segment. Optional
 * one-shot drops in gw make chosen chunks arrive only as retransmissions, after later ones.
 */
import { randomBytes } from 'node:crypto';
import { fixturePath } from './fixtures.js';
import { HarnessError, requireBinary } from './proc.js';
import { iptables, iptablesCounters } from './observe.js';
import type { Topology } from './topology.js';

/** Options for rawSegments(). */
export interface RawSegmentsOptions {
  /** Chunks to write, each as one segment (strings are sent as UTF-8). */
  chunks: Array<Uint8Array | string>;
  /** Server port; default 80. */
  port?: number;
  /** Address to connect to; default the server's address in the chosen family. */
  host?: string;
  /** Use the server's IPv6 address; default false. */
  ipv6?: boolean;
  /** Pause between chunks in milliseconds (one number for all gaps, or one per gap); default 30. */
  delayMs?: number | number[];
  /**
   * Indices of chunks whose first transmission gw drops (raw PREROUTING, before conntrack
   * and before any queue rule): the server side then sees the next chunk first and the
   * dropped one as a retransmission. Dropped chunks arrive in their original order, after
   * the next chunk that was not dropped. Each chunk must contain bytes no other chunk has.
   */
  dropFirst?: number[];
  /** Half-close (FIN) after the last chunk; default false. */
  endAfterWrite?: boolean;
  /** How long to wait for a first response byte after the last write, ms; default 1000. */
  waitMs?: number;
  /** How long the connection may stay quiet after response bytes before we stop, ms; default 200. */
  idleMs?: number;
  /** Connect limit in milliseconds; default 5000. */
  connectTimeoutMs?: number;
}

/** What rawSegments() observed. */
export interface RawSegmentsResult {
  /** The TCP handshake completed. */
  connected: boolean;
  /** Chunks handed to the socket before the end. */
  written: number;
  /** Bytes received from the server. */
  response: Buffer;
  /** The same as UTF-8 text. */
  responseText: string;
  /** How the connection ended on our side of the wait. */
  closedBy: 'fin' | 'reset' | 'idle' | 'timeout' | 'error';
  /** null when the server answered or closed normally; 'timeout' when nothing came back. */
  error: null | 'reset' | 'timeout' | 'refused' | 'other';
  /** errno code (ECONNRESET, EPIPE, ECONNREFUSED, ...) when there was one. */
  errorCode: string | null;
  /** ms from start to connect, to the first response byte, and to the end. */
  connectMs: number | null;
  firstByteMs: number | null;
  timeMs: number;
  /** For each dropFirst index (same order): whether gw's one-shot drop rule fired. */
  dropped: boolean[];
}

/**
 * Opens a TCP connection from the client namespace and writes `chunks` as separate segments
 * (a Node net.Socket child with TCP_NODELAY); reports the response bytes or the error.
 */
export async function rawSegments(topo: Topology, opts: RawSegmentsOptions): Promise<RawSegmentsResult> {
  const family = opts.ipv6 ? 6 : 4;
  const host = opts.host ?? topo.addrs(family).server;
  const port = opts.port ?? 80;
  const chunks = opts.chunks.map((c) => (typeof c === 'string' ? Buffer.from(c) : Buffer.from(c)));
  const gaps = chunks.length > 0 ? chunks.length - 1 : 0;
  const delay = opts.delayMs ?? 30;
  const delays = Array.isArray(delay) ? delay : new Array<number>(gaps).fill(delay);
  const dropFirst = opts.dropFirst ?? [];
  const tag = randomBytes(4).toString('hex');
  const rules = dropFirst.map((index) => dropRule(topo, chunks, index, host, port, `fg-e2e-drop-${tag}-${index}`));
  const ipFamily = host.includes(':') ? 6 : 4;
  if (rules.length > 0) {
    // a retransmission must not merge two dropped chunks into one segment
    await topo.exec('client', [requireBinary('sysctl'), '-qw', 'net.ipv4.tcp_retrans_collapse=0']);
  }
  for (const rule of rules) await iptables(topo, ['-t', 'raw', '-I', 'PREROUTING', ...rule], { family: ipFamily });
  try {
    const spec = {
      host,
      port,
      chunks: chunks.map((c) => c.toString('base64')),
      delays,
      endAfterWrite: opts.endAfterWrite ?? false,
      waitMs: opts.waitMs ?? 1000,
      idleMs: opts.idleMs ?? 200,
      connectTimeoutMs: opts.connectTimeoutMs ?? 5000,
    };
    const totalDelay = delays.reduce((a, b) => a + b, 0);
    const res = await topo.exec('client', [process.execPath, fixturePath('raw-client.mjs')], {
      input: JSON.stringify(spec),
      timeoutMs: spec.connectTimeoutMs + totalDelay + spec.waitMs + 30_000,
    });
    const line = res.stdout.trim().split('\n').pop() ?? '';
    let parsed: Omit<RawSegmentsResult, 'response' | 'responseText' | 'dropped'> & { response: string };
    try {
      parsed = JSON.parse(line);
    } catch {
      throw new HarnessError(`e2e: raw client failed (exit ${res.code}): ${res.stderr.trim() || res.stdout.trim()}`);
    }
    let dropped: boolean[] = [];
    if (rules.length > 0) {
      const counters = await iptablesCounters(topo, 'raw', 'PREROUTING', { family: ipFamily });
      dropped = dropFirst.map((index) => {
        const rule = counters.rules.find((r) => r.spec.includes(`fg-e2e-drop-${tag}-${index}`));
        return rule !== undefined && rule.packets > 0;
      });
    }
    const response = Buffer.from(parsed.response, 'base64');
    return { ...parsed, response, responseText: response.toString('utf8'), dropped };
  } finally {
    for (const rule of rules) {
      await iptables(topo, ['-t', 'raw', '-D', 'PREROUTING', ...rule], { family: ipFamily }).catch(() => undefined);
    }
  }
}

/** IP plus TCP header bytes before the payload of a data segment (timestamps option on). */
const HEADER_BYTES = { 4: 20 + 32, 6: 40 + 32 } as const;

/** iptables rule (after `-I PREROUTING`) dropping the first segment that carries chunk `index`. */
function dropRule(topo: Topology, chunks: Buffer[], index: number, host: string, port: number, comment: string): string[] {
  const chunk = chunks[index];
  if (chunk === undefined || chunk.length === 0) throw new HarnessError(`e2e: dropFirst index ${index} is not a non-empty chunk`);
  const marker = uniqueSlice(chunks, index);
  if (marker === undefined) {
    throw new HarnessError(`e2e: chunk ${index} has no bytes that the other chunks lack; cannot drop it alone`);
  }
  const family = host.includes(':') ? 6 : 4;
  return [
    '-i', topo.ifaces.gwClient, '-p', 'tcp', '-d', host, '--dport', String(port),
    // search only the payload, so short markers cannot match header bytes
    '-m', 'string', '--algo', 'bm', '--from', String(HEADER_BYTES[family]), '--hex-string', `|${marker.toString('hex')}|`,
    // one-shot: the first matching packet uses the only token; retransmissions pass
    '-m', 'limit', '--limit', '1/hour', '--limit-burst', '1',
    '-m', 'comment', '--comment', comment,
    '-j', 'DROP',
  ];
}

/** A short slice of chunks[index] (at most 64 bytes) found in no other chunk. */
function uniqueSlice(chunks: Buffer[], index: number): Buffer | undefined {
  const chunk = chunks[index]!;
  const others = chunks.filter((_, i) => i !== index);
  for (let len = Math.min(8, chunk.length); len <= Math.min(64, chunk.length); len++) {
    for (let start = 0; start + len <= chunk.length; start++) {
      const cand = chunk.subarray(start, start + len);
      if (!others.some((o) => o.includes(cand))) return cand;
    }
  }
  return undefined;
}
