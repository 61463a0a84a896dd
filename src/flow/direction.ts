/** The per-direction TCP bookkeeping of a flow (flow.c2s, flow.s2c), kept small. */
import type { DirectionState } from './flow.js';

/** Bits of {@link Direction.bits}: which optional fields hold a value, the flags, TTL and window scale. */
const HAS_ISN = 1, HAS_SND_NXT = 2, HAS_LAST_ACK = 4, HAS_TS_VAL = 8, HAS_TTL = 16, HAS_MD5 = 32, MD5 = 64, FIN_SEEN = 128;
const TTL_SHIFT = 8, WSCALE_SHIFT = 16;

/**
 * A {@link DirectionState} kept small. Its 32-bit numbers are stored as signed 32-bit integers: V8
 * keeps those in the object itself, where an unsigned one of 2^31 or more (half of all sequence
 * numbers) costs a 16-byte box. The one-byte fields (TTL, window scale: both come from a byte of
 * the packet) and the flags share one integer. The accessors read and write the plain values.
 * Every field is present from the start: one set later would cost a property array per direction.
 */
export class Direction implements DirectionState {
  /** HAS_* bits saying which optional fields are set (undefined otherwise), MD5, FIN_SEEN, TTL and window scale. */
  private bits = 0;
  private isn_ = 0;
  private sndNxt_ = 0;
  private lastAck_ = 0;
  private tsVal_ = 0;
  window = 0;
  maxWindow = 0;
  /** This direction's packets and bytes: the flow's counters (packetsOut and bytesOut for the client's). */
  packets = 0;
  bytes = 0;

  /** An optional unsigned 32-bit field: its value when `flag` says it is set. */
  private read(flag: number, stored: number): number | undefined {
    return this.bits & flag ? stored >>> 0 : undefined;
  }

  /** Marks an optional field set or unset; returns what to store (signed, so V8 keeps it unboxed). */
  private store(flag: number, v: number | undefined): number {
    if (v === undefined) {
      this.bits &= ~flag;
      return 0;
    }
    this.bits |= flag;
    return v | 0;
  }

  get isn(): number | undefined {
    return this.read(HAS_ISN, this.isn_);
  }

  set isn(v: number | undefined) {
    this.isn_ = this.store(HAS_ISN, v);
  }

  get sndNxt(): number | undefined {
    return this.read(HAS_SND_NXT, this.sndNxt_);
  }

  set sndNxt(v: number | undefined) {
    this.sndNxt_ = this.store(HAS_SND_NXT, v);
  }

  get lastAck(): number | undefined {
    return this.read(HAS_LAST_ACK, this.lastAck_);
  }

  set lastAck(v: number | undefined) {
    this.lastAck_ = this.store(HAS_LAST_ACK, v);
  }

  get tsVal(): number | undefined {
    return this.read(HAS_TS_VAL, this.tsVal_);
  }

  set tsVal(v: number | undefined) {
    this.tsVal_ = this.store(HAS_TS_VAL, v);
  }

  /** TTL / hop limit: a byte of the IP header. */
  get ttl(): number | undefined {
    return this.bits & HAS_TTL ? (this.bits >>> TTL_SHIFT) & 0xff : undefined;
  }

  set ttl(v: number | undefined) {
    this.bits &= ~(HAS_TTL | (0xff << TTL_SHIFT));
    if (v !== undefined) this.bits |= HAS_TTL | ((v & 0xff) << TTL_SHIFT);
  }

  get md5(): boolean | undefined {
    return this.bits & HAS_MD5 ? (this.bits & MD5) !== 0 : undefined;
  }

  set md5(v: boolean | undefined) {
    this.bits &= ~(HAS_MD5 | MD5);
    if (v !== undefined) this.bits |= HAS_MD5 | (v ? MD5 : 0);
  }

  /** Window scale shift: a byte of the SYN's option. */
  get wscale(): number {
    return (this.bits >>> WSCALE_SHIFT) & 0xff;
  }

  set wscale(v: number) {
    this.bits = (this.bits & ~(0xff << WSCALE_SHIFT)) | ((v & 0xff) << WSCALE_SHIFT);
  }

  get finSeen(): boolean {
    return (this.bits & FIN_SEEN) !== 0;
  }

  set finSeen(v: boolean) {
    if (v) this.bits |= FIN_SEEN;
    else this.bits &= ~FIN_SEEN;
  }

  /** The fields as plain data (what JSON.stringify shows). */
  toJSON(): DirectionState {
    return {
      isn: this.isn, sndNxt: this.sndNxt, lastAck: this.lastAck, wscale: this.wscale, window: this.window,
      maxWindow: this.maxWindow, tsVal: this.tsVal, ttl: this.ttl, md5: this.md5, finSeen: this.finSeen,
      packets: this.packets, bytes: this.bytes,
    };
  }
}
