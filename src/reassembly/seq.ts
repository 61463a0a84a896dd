/** 32-bit TCP sequence-number arithmetic with wraparound (RFC 9293 section 3.4). */

/** Signed distance from `b` to `a` (a - b) in sequence space, in [-2^31, 2^31). */
export function seqDiff(a: number, b: number): number {
  return ((a - b) | 0);
}

/** `a + n` wrapped to an unsigned 32-bit sequence number. */
export function seqAdd(a: number, n: number): number {
  return (a + n) >>> 0;
}

/** True when `a` comes strictly before `b`. */
export function seqLt(a: number, b: number): boolean {
  return seqDiff(a, b) < 0;
}

/** True when `a` comes before or equals `b`. */
export function seqLte(a: number, b: number): boolean {
  return seqDiff(a, b) <= 0;
}
