/** Direction-independent flow keys: both directions of a connection map to one key. */

/** Builds the key of the connection a packet belongs to, whichever way it travels. */
export function flowKey(src: string, sport: number, dst: string, dport: number): string {
  // Order the endpoints so that A->B and B->A give the same string.
  if (src < dst || (src === dst && sport <= dport)) return `${src}|${sport}|${dst}|${dport}`;
  return `${dst}|${dport}|${src}|${sport}`;
}
