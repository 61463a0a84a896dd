/**
 * The live packet source: one kernel NFQUEUE, read in batches through our own N-API addon
 * (native/, raw nfnetlink_queue over netlink), with verdicts buffered and sent in batches. The
 * addon reads and sends on threads of its own (native/README.md); JavaScript only sees batches.
 *
 * Lifecycle of an NfQueue:
 *  1. `NfQueue.open()` validates the options, binds the queue and waits for the kernel's ack.
 *  2. `onBatch` runs 0..n times, once per burst of packets read. Verdicts queued during it are
 *     handed to the sender in one call when it returns (even if it throws; the exception goes
 *     to onError).
 *  3. `verdict()` outside a batch callback is handed over on the next microtask, or by `flush()`.
 *  4. `close()` sends what is still queued, unbinds and closes the socket; later calls throw
 *     ERR_QUEUE_CLOSED. Packets still held in the kernel queue are dropped by the kernel.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FlowgateError } from '../errors.js';
import type { NextSegmentChecks } from '../flow/tcp.js';
import type { HelloArm } from '../verdict/sink.js';

/** Verdict: drop the packet (include/uapi/linux/netfilter.h NF_DROP). */
export const NF_DROP = 0;
/** Verdict: let the packet continue after the NFQUEUE rule's table (NF_ACCEPT). */
export const NF_ACCEPT = 1;
/** Verdict: run the packet through the hook again from the top, usually with a new mark (NF_REPEAT). */
export const NF_REPEAT = 4;

/** NFQA_SKB_INFO bit: checksums not computed yet (locally generated or offloaded); they are fine. */
export const SKB_CSUM_NOTREADY = 1;
/** NFQA_SKB_INFO bit: a GSO packet, larger than the device MTU. */
export const SKB_GSO = 2;
/** NFQA_SKB_INFO bit: the receiving device did not verify the checksum. */
export const SKB_CSUM_NOTVERIFIED = 4;

/**
 * M_FLAGS bit (ours, not the kernel's): the binding already accepted this packet, a bare SYN or
 * SYN-ACK, because the queue was opened with `acceptHandshake`. Give it no verdict of your own.
 */
export const ACCEPTED_BY_BINDING = 0x80;

/**
 * M_FLAGS bit (ours): the binding already allowed this packet, the client's first data after a
 * ClientHello, because the caller armed its flow with expectAfterHello, the packet's first record
 * ends the hello's inspection and it passed the caller's checks for fakes. Give it no verdict of your own.
 */
export const ALLOWED_AFTER_HELLO = 0x40;

/**
 * M_FLAGS bit (ours): the binding already let this packet on, a connection's first ClientHello,
 * because the caller armed the flow with expectHello on its SYN, the hello is plain and names a
 * name allowHelloName allowed for its server port, and it passed the caller's checks for fakes.
 * Give it no verdict of your own.
 */
export const HELLO_ALLOWED = 0x20;

/**
 * M_FLAGS bit (ours): the packet is not a queued one but the kernel's NFLOG copy of a bare SYN or
 * SYN-ACK the rules accepted themselves (the queue was opened with `logGroup`). It has no id
 * (M_ID 0) and takes no verdict; ACCEPTED_BY_BINDING and SKB_CSUM_NOTREADY are set with it
 * (conntrack checked its checksum on the way in).
 */
export const LOGGED_BY_KERNEL = 0x8000;

/**
 * M_FLAGS bit (ours), with LOGGED_BY_KERNEL: the binding armed this SYN's connection for its
 * first ClientHello itself (armHellosOnSyn), as expectHello would.
 */
export const SYN_ARMED_BY_BINDING = 0x4000;

/**
 * M_FLAGS bit (ours), with LOGGED_BY_KERNEL and ACCEPTED_BY_BINDING: the kernel's NFLOG copy of a
 * server packet, cut to its IP and TCP headers, on which the rules ended the inspection of a hello
 * the binding let on with HelloArm.answerMark: it starts a ServerHello that is not a
 * HelloRetryRequest (see src/cli/rules.ts answerRules). Takes no verdict.
 */
export const ANSWERED_BY_KERNEL = 0x2000;

/** Number of uint32 slots per packet in PacketBatch.meta. */
export const META_STRIDE = 8;
/** meta slot: kernel packet id, the handle for verdict(). */
export const M_ID = 0;
/** meta slot: the packet's mark (skb->mark). */
export const M_MARK = 1;
/** meta slot: input interface index, 0 when none (e.g. locally generated). */
export const M_INDEV = 2;
/** meta slot: output interface index, 0 when none (e.g. PREROUTING, INPUT). */
export const M_OUTDEV = 3;
/** meta slot: bits 0-4 SKB_* info bits, bit 5 HELLO_ALLOWED, bit 6 ALLOWED_AFTER_HELLO, bit 7 ACCEPTED_BY_BINDING, 8-12 netfilter hook, bit 13 ANSWERED_BY_KERNEL, bit 14 SYN_ARMED_BY_BINDING, bit 15 LOGGED_BY_KERNEL, 16-31 hardware protocol (ethertype). */
export const M_FLAGS = 4;
/** meta slot: byte offset of the payload (the IP packet) in PacketBatch.data. */
export const M_OFF = 5;
/** meta slot: payload length in bytes (at most copyRange). */
export const M_LEN = 6;
/** meta slot: original packet length; larger than M_LEN when the payload was cut to copyRange. */
export const M_ORIGLEN = 7;

/** Options for NfQueue.open. Every limit is checked here before it reaches the kernel. */
export interface QueueOptions {
  /** Queue number, 0..65535, as in `-j NFQUEUE --queue-num N`. */
  queue: number;
  /** Packets the kernel holds for us before it drops (or, with failOpen, accepts); default 65536. */
  maxLen?: number;
  /** Bytes of each packet copied to us, 1..65535 (the kernel caps at 65531); default 65535. */
  copyRange?: number;
  /** Receive GSO packets whole instead of segmented by the kernel (NFQA_CFG_F_GSO); default true. */
  gso?: boolean;
  /** Accept instead of drop when the queue is full (NFQA_CFG_F_FAIL_OPEN); default false. */
  failOpen?: boolean;
  /** Socket receive buffer in bytes, 4096..1 GiB (forced past rmem_max as root); default 8 MiB. */
  rcvbufBytes?: number;
  /** Most packets delivered in one onBatch call, 1..65536; default 512. */
  batchMaxPackets?: number;
  /**
   * Accept bare SYN and SYN-ACK packets (no data, no FIN/RST, no IPv6 extension headers) in the
   * binding, before the batch reaches JavaScript, so a handshake never waits for the event loop.
   * They are still delivered, flagged ACCEPTED_BY_BINDING. Default false: leave it off when
   * something must be able to drop or mark a SYN (a `newFlow` hook that decides flows).
   */
  acceptHandshake?: boolean;
  /**
   * Also read NFLOG group N (0..65535), where `flowgate rules` logs bare SYNs and SYN-ACKs that it
   * accepts without queueing them: they reach onBatch flagged LOGGED_BY_KERNEL, in order before
   * the queued packets that follow them. Default -1: no group. Throws ERR_LOG_BUSY when another
   * socket holds the group.
   */
  logGroup?: number;
}

/** Defaults applied to QueueOptions (units as documented there). */
export const QUEUE_DEFAULTS = {
  maxLen: 65536,
  copyRange: 65535,
  gso: true,
  failOpen: false,
  rcvbufBytes: 8 * 1024 * 1024,
  batchMaxPackets: 512,
  acceptHandshake: false,
  logGroup: -1,
} as const;

/**
 * One burst of packets. `data` is a fresh Buffer holding every payload back to back and is
 * never reused, so subarray views of it stay valid for as long as they are kept.
 */
export interface PacketBatch {
  data: Buffer;
  /** META_STRIDE uint32 per packet, indexed with M_ID..M_ORIGLEN. */
  meta: Uint32Array;
  count: number;
}

/** Counters of one open queue; all only grow. */
export interface QueueStats {
  /** Packets received from the kernel. */
  received: number;
  /** onBatch calls. */
  batches: number;
  /** Times the socket overflowed (ENOBUFS): the kernel dropped messages meant for us. */
  enobufs: number;
  /** Verdicts handed to the kernel. */
  verdicts: number;
  /** send() calls that carried them (many verdicts travel in one datagram). */
  verdictSends: number;
  /** Verdict chunks or raw packets that could not be sent. */
  sendErrors: number;
  /** Other receive failures, truncated or malformed messages. */
  recvErrors: number;
  /** Verdicts the kernel rejected (e.g. an id that is no longer queued). */
  kernelErrors: number;
  /** Bare SYN/SYN-ACKs the binding accepted itself (acceptHandshake); included in `verdicts`. */
  handshakeAccepts: number;
  /** Batches of 256 KiB or more handed to onBatch without a copy (their Buffer is external memory). */
  batchesHandedOver: number;
  /** Of those, how many the caller then wanted to drop or re-mark (see alreadyGiven); 0 normally. */
  handshakeOverrides: number;
  /** Client data packets after a ClientHello the binding allowed itself (expectAfterHello); included in `verdicts`. */
  afterHelloAllows: number;
  /** Of those, how many the caller then wanted dropped or marked otherwise (see alreadyGiven); 0 normally. */
  afterHelloOverrides: number;
  /** expectAfterHello calls the binding took, and those it refused (a packet of the flow was already waiting, or too many). */
  afterHelloArmed: number;
  afterHelloRefused: number;
  /**
   * Packets of a connection whose record after the hello the binding allowed, read within a second
   * of it, before the rules had saved the allow mark (the client's request right behind its
   * Finished): the binding gives them the allow mark too, flagged ALLOWED_AFTER_HELLO, as the
   * engine gives a decided flow's stragglers; a SYN on the same ports ends that. Included in
   * `verdicts`; overrides count in afterHelloOverrides.
   */
  tailAllows: number;
  /** Connections the binding armed on their SYN itself (armHellosOnSyn); not in helloArmed. */
  synArms: number;
  /**
   * SYNs the binding did not arm because it remembers an earlier SYN of their connection (see
   * armHellosOnSyn); the engine arms such a flow itself, as before.
   */
  synRepeats: number;
  /** Times arming on the SYN paused for 130 s: a packet went by that the binding could not read or remember. */
  synArmPauses: number;
  /** First ClientHellos the binding let on itself (expectHello); included in `verdicts`. */
  helloAllows: number;
  /** Of those, how many the caller then wanted dropped or marked otherwise (see alreadyGiven); 0 normally. */
  helloOverrides: number;
  /** Of helloAllows, those given HelloArm.answerMark too (their echoed session id holds no 0x16). */
  helloAnswerMarks: number;
  /** Copies of a server's ServerHello on which the rules ended a hello's inspection (ANSWERED_BY_KERNEL); not in `received`. */
  answered: number;
  /** expectHello calls the binding took, and those it refused. */
  helloArmed: number;
  helloRefused: number;
  /** Names (with a port) the binding holds from allowHelloName since the last clearHelloNames. */
  helloNames: number;
  /** Bare SYN/SYN-ACKs read from the NFLOG group (logGroup); not in `received`, they take no verdict. */
  logged: number;
  /** Other packets logged to the group, dropped unread (flowgate's rules log none). */
  logIgnored: number;
  /** Times the group's socket overflowed: handshakes lost, their flows look midstream. */
  logEnobufs: number;
  /** Times the reader left copies in the group's socket because 4 batches waited for JavaScript (a flood). */
  logBehind: number;
}

/** Stats the JavaScript side of the queue keeps. */
type JsStats = 'handshakeOverrides' | 'afterHelloOverrides' | 'afterHelloArmed' | 'afterHelloRefused' | 'helloOverrides'
  | 'helloArmed' | 'helloRefused';

interface NativeQueue {
  verdicts(quads: Uint32Array, count: number): void;
  sendRaw(packet: Uint8Array, mark?: number): void;
  stats(): Omit<QueueStats, JsStats>;
  expectAfterHello(keyUnits: Uint16Array, keyLength: number, clientLow: boolean, seq: number, allowMark: number, mask: number,
    checks: Uint32Array): boolean;
  expectHello(keyUnits: Uint16Array, keyLength: number, clientLow: boolean, seq: number, checks: Uint32Array, arm: Uint32Array): boolean;
  armHellosOnSyn(arm: Uint32Array | null, checks: Uint32Array): void;
  forget(keyUnits: Uint16Array, keyLength: number, hello: boolean): void;
  allowHelloName(name: string, port: number): boolean;
  clearHelloNames(): void;
  close(): void;
  readonly closed: boolean;
}

interface NativeModule {
  Queue: new (
    opts: Required<QueueOptions> | Omit<Required<QueueOptions>, 'logGroup'>,
    onBatch: (data: Buffer, meta: Uint32Array, count: number) => void,
    onError: (err: unknown) => void,
  ) => NativeQueue;
  notify(socketPath: string, message: string): void;
  endsAfterHello(bytes: Uint8Array): boolean;
  simpleHelloName(bytes: Uint8Array, maxHelloBytes: number): string | null;
  readTcp(packet: Uint8Array): NativeTcpView | null;
  passesFakeChecks(packet: Uint8Array, skbInfo: number, checks: Uint32Array): boolean | null;
  echoCannotPassForServerHello(bytes: Uint8Array): boolean;
}

/** What the binding's reader thread reads of a TCP packet (see bindingReaders). */
export interface NativeTcpView {
  /** The connection key's UTF-16 code units, as src/flow/key.ts flowKey builds it. */
  key: Uint16Array;
  srcLow: boolean;
  seq: number;
  ack: number;
  flags: number;
  ttl: number;
  payloadLength: number;
  /** The TCP checksum is right. */
  checksumOk: boolean;
  options: { malformed: boolean; hasTs: boolean; tsVal: number; md5: boolean };
}

/**
 * The pure packet readers the binding's reader thread uses to allow a plain first ClientHello
 * (NfQueue.expectHello) and client data after one (NfQueue.expectAfterHello), exported by the addon so tests can hold them against
 * the JavaScript that must agree with them. Throws ERR_NATIVE_UNAVAILABLE without the addon.
 */
export function bindingReaders(): Pick<NativeModule, 'endsAfterHello' | 'simpleHelloName' | 'readTcp' | 'passesFakeChecks'
  | 'echoCannotPassForServerHello'> {
  const mod = loadAddon();
  return {
    endsAfterHello: (b) => mod.endsAfterHello(b), simpleHelloName: (b, max) => mod.simpleHelloName(b, max),
    readTcp: (p) => mod.readTcp(p),
    passesFakeChecks: (p, skb, c) => mod.passesFakeChecks(p, skb, c),
    echoCannotPassForServerHello: (b) => mod.echoCannotPassForServerHello(b),
  };
}

const ADDON_PATH = join('native', 'build', 'Release', 'flowgate_nfqueue.node');
let addon: NativeModule | undefined;
let addonError: string | undefined;

function loadAddon(): NativeModule {
  if (addon !== undefined) return addon;
  if (addonError === undefined) {
    // Walk up from this file (src/capture/ or dist/src/capture/) to the package root.
    let dir = dirname(fileURLToPath(import.meta.url));
    let root: string | undefined;
    for (;;) {
      if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'native'))) {
        root = dir;
        break;
      }
      const up = dirname(dir);
      if (up === dir) break;
      dir = up;
    }
    if (root === undefined) {
      addonError = 'cannot find the package root (a folder with package.json and native/)';
    } else if (!existsSync(join(root, ADDON_PATH))) {
      addonError = `${join(root, ADDON_PATH)} is not built: run \`npm run build\``;
    } else {
      try {
        addon = createRequire(import.meta.url)(join(root, ADDON_PATH)) as NativeModule;
        return addon;
      } catch (e) {
        addonError = `loading ${join(root, ADDON_PATH)} failed: ${(e as Error).message}`;
      }
    }
  }
  throw new FlowgateError('ERR_NATIVE_UNAVAILABLE', `the NFQUEUE addon is unavailable: ${addonError}`);
}

/**
 * Sends one sd_notify datagram to a Unix socket path (or '@abstract' name). Lives in the addon
 * because Node has no Unix datagram sockets. Throws FlowgateError ERR_NOTIFY on failure.
 */
export function notifySocket(socketPath: string, message: string): void {
  try {
    loadAddon().notify(socketPath, message);
  } catch (err) {
    if (err instanceof FlowgateError) throw err;
    const e = err as { code?: string; errno?: number; message?: string };
    throw new FlowgateError(e.code ?? 'ERR_NOTIFY', e.message ?? String(err), { errno: e.errno, cause: err });
  }
}

/** Whether the native addon can be loaded; see nativeUnavailableReason() when it cannot. */
export function nativeAvailable(): boolean {
  try {
    loadAddon();
    return true;
  } catch {
    return false;
  }
}

/** Why the native addon cannot be loaded, or undefined when it can. */
export function nativeUnavailableReason(): string | undefined {
  return nativeAvailable() ? undefined : addonError;
}

/** Turns whatever the addon threw or reported into a FlowgateError (code and errno kept). */
function toFlowgateError(e: unknown): FlowgateError {
  if (e instanceof FlowgateError) return e;
  const o = e as { code?: unknown; errno?: unknown; message?: unknown } | null;
  if (o !== null && typeof o === 'object' && typeof o.code === 'string') {
    const errno = typeof o.errno === 'number' ? o.errno : undefined;
    return new FlowgateError(o.code, String(o.message), { errno });
  }
  return new FlowgateError('ERR_QUEUE', String(e), { cause: e });
}

function isUint32(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffffffff;
}

function checkInt(name: string, v: unknown, min: number, max: number): void {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new FlowgateError('ERR_ARG', `option ${name} must be an integer in ${min}..${max}, got ${String(v)}`);
  }
}

const OPTION_KEYS = new Set(['queue', ...Object.keys(QUEUE_DEFAULTS)]);

function checkOptions(opts: QueueOptions): Required<QueueOptions> {
  if (opts === null || typeof opts !== 'object') throw new FlowgateError('ERR_ARG', 'queue options must be an object');
  for (const k of Object.keys(opts)) {
    if (!OPTION_KEYS.has(k)) throw new FlowgateError('ERR_ARG', `unknown queue option ${k}`);
  }
  const o: Required<QueueOptions> = {
    queue: opts.queue,
    maxLen: opts.maxLen ?? QUEUE_DEFAULTS.maxLen,
    copyRange: opts.copyRange ?? QUEUE_DEFAULTS.copyRange,
    gso: opts.gso ?? QUEUE_DEFAULTS.gso,
    failOpen: opts.failOpen ?? QUEUE_DEFAULTS.failOpen,
    rcvbufBytes: opts.rcvbufBytes ?? QUEUE_DEFAULTS.rcvbufBytes,
    batchMaxPackets: opts.batchMaxPackets ?? QUEUE_DEFAULTS.batchMaxPackets,
    acceptHandshake: opts.acceptHandshake ?? QUEUE_DEFAULTS.acceptHandshake,
    logGroup: opts.logGroup ?? QUEUE_DEFAULTS.logGroup,
  };
  checkInt('queue', o.queue, 0, 65535);
  checkInt('maxLen', o.maxLen, 1, 0xffffffff);
  checkInt('copyRange', o.copyRange, 1, 65535);
  checkInt('rcvbufBytes', o.rcvbufBytes, 4096, 1024 * 1024 * 1024);
  checkInt('batchMaxPackets', o.batchMaxPackets, 1, 65536);
  checkInt('logGroup', o.logGroup, -1, 65535);
  for (const k of ['gso', 'failOpen', 'acceptHandshake'] as const) {
    if (typeof o[k] !== 'boolean') throw new FlowgateError('ERR_ARG', `option ${k} must be a boolean`);
  }
  return o;
}

/** An expectAfterHello (`hello` undefined) or expectHello call waiting to be handed over. */
interface Arm {
  key: string;
  clientLow: boolean;
  seq: number;
  checks: NextSegmentChecks;
  hello: HelloArm | undefined;
  /** expectHello: the SYN-ACK's sequence number + 1 once the caller saw it before the hand-over (helloAnswered), else -1. */
  serverNext: number;
}

/** Scratch for packHelloArm: the binding's expectHello words (native/src/queue_internal.h kHelloArmWords). */
const HELLO_ARM = new Uint32Array(8);

function packHelloArm(h: HelloArm, serverNext: number): Uint32Array {
  HELLO_ARM[0] = h.mark;
  HELLO_ARM[1] = h.allowMark;
  HELLO_ARM[2] = h.mask;
  HELLO_ARM[3] = h.maxHelloBytes;
  HELLO_ARM[4] = h.strict ? 1 : 0;
  HELLO_ARM[5] = serverNext >= 0 ? 1 : 0;
  HELLO_ARM[6] = serverNext >= 0 ? serverNext : 0;
  HELLO_ARM[7] = h.answerMark ?? 0;
  return HELLO_ARM;
}

/** Most names allowHelloName keeps (the binding's kMaxHelloNames). */
export const MAX_HELLO_NAMES = 65536;

/** Scratch for packChecks: the binding's FakeChecks words (native/src/wire.h). */
const CHECKS = new Uint32Array(9);

/**
 * The engine's checks for the packet expectAfterHello lets through, as the binding takes them (in
 * a shared scratch array, valid until the next call).
 */
export function packChecks(c: NextSegmentChecks): Uint32Array {
  CHECKS[0] = c.verifyChecksum ? 1 : 0;
  CHECKS[1] = Math.min(255, Math.max(0, c.minTtl));
  CHECKS[2] = c.tsMin !== undefined ? 1 : 0;
  CHECKS[3] = c.tsMin ?? 0;
  CHECKS[4] = c.ackMin !== undefined ? 1 : 0;
  CHECKS[5] = c.ackMin ?? 0;
  CHECKS[6] = Math.min(0xffffffff, Math.max(0, c.maxPayload));
  CHECKS[7] = c.ackAbove !== undefined ? 1 : 0;
  CHECKS[8] = c.ackAbove ?? 0;
  return CHECKS;
}

/** The largest batch in which flushIfQuiet sends at once. */
export const QUIET_BATCH_PACKETS = 4;

/** Scratch for keyUnits: a flow key has at most 18 units (IPv6). */
const KEY_UNITS = new Uint16Array(18);

/**
 * A flow key's UTF-16 code units, for the binding (in a shared scratch array, valid until the next
 * call). Not the string itself: a port from 0xd800 to 0xdfff is a lone surrogate in the key,
 * which string conversions may replace.
 */
function keyUnits(key: string): Uint16Array {
  if (key.length !== 6 && key.length !== 18) throw new FlowgateError('ERR_ARG', `not a flow key (${key.length} units)`);
  for (let i = 0; i < key.length; i++) KEY_UNITS[i] = key.charCodeAt(i);
  return KEY_UNITS;
}

function closedError(queue: number): FlowgateError {
  return new FlowgateError('ERR_QUEUE_CLOSED', `NFQUEUE ${queue} is closed`);
}

/** A bound kernel queue delivering packet batches and taking verdicts; see the lifecycle above. */
export class NfQueue {
  /** The queue number this object is bound to. */
  readonly queue: number;
  readonly #native: NativeQueue;
  readonly #onBatch: (b: PacketBatch) => void;
  readonly #onError: (e: FlowgateError) => void;
  #pending = new Uint32Array(4 * 1024); // quadruples: id, verdict, hasMark, mark
  #count = 0;
  #inBatch = false;
  /** Packets in the batch being delivered (see flushIfQuiet). */
  #batchCount = 0;
  #flushScheduled = false;
  #handshakeOverrides = 0;
  #afterHelloOverrides = 0;
  #afterHelloArmed = 0;
  #afterHelloRefused = 0;
  #helloOverrides = 0;
  #helloArmed = 0;
  #helloRefused = 0;
  /** expectAfterHello and expectHello calls waiting for the next flush, which hands them over after the verdicts. */
  #arms: Arm[] = [];
  /** The allow mark and mask of the last expectAfterHello, for alreadyGiven. */
  #allowMark = 0;
  #mask = 0;
  /** The mark and mask of the last expectHello, for alreadyGiven. */
  #helloMark = 0;
  #helloMask = 0;

  private constructor(opts: Required<QueueOptions>, onBatch: (b: PacketBatch) => void, onError: (e: FlowgateError) => void) {
    this.queue = opts.queue;
    this.#onBatch = onBatch;
    this.#onError = onError;
    const mod = loadAddon();
    try {
      const { logGroup, ...rest } = opts;
      this.#native = new mod.Queue(
        logGroup >= 0 ? opts : rest,
        (data, meta, count) => this.#deliver(data, meta, count),
        (err) => this.#report(toFlowgateError(err)),
      );
    } catch (e) {
      throw toFlowgateError(e);
    }
  }

  /**
   * Binds `opts.queue` (and `opts.logGroup`). Throws FlowgateError: ERR_ARG (bad option),
   * ERR_QUEUE_PERM (needs root or CAP_NET_ADMIN), ERR_QUEUE_BUSY (bound elsewhere), ERR_QUEUE_BIND,
   * ERR_LOG_BUSY, ERR_LOG_BIND, ERR_NATIVE_UNAVAILABLE.
   * `onError` gets receive failures and exceptions thrown by onBatch (default: a process warning).
   */
  static open(opts: QueueOptions, onBatch: (b: PacketBatch) => void, onError?: (e: FlowgateError) => void): NfQueue {
    const checked = checkOptions(opts);
    if (typeof onBatch !== 'function') throw new FlowgateError('ERR_ARG', 'onBatch must be a function');
    if (onError !== undefined && typeof onError !== 'function') throw new FlowgateError('ERR_ARG', 'onError must be a function');
    return new NfQueue(checked, onBatch, onError ?? ((e) => process.emitWarning(e)));
  }

  /** True once close() ran. */
  get closed(): boolean {
    return this.#native.closed;
  }

  /** Queues one verdict; sent when the current batch callback returns, or on the next microtask when called outside one. */
  verdict(id: number, verdict: number, mark?: number): void {
    if (this.#native.closed) throw closedError(this.queue);
    if (!isUint32(id)) throw new FlowgateError('ERR_ARG', `packet id must be a uint32, got ${String(id)}`);
    if (verdict !== NF_DROP && verdict !== NF_ACCEPT && verdict !== NF_REPEAT) {
      throw new FlowgateError('ERR_ARG', `verdict must be NF_DROP, NF_ACCEPT or NF_REPEAT, got ${String(verdict)}`);
    }
    if (mark !== undefined && !isUint32(mark)) throw new FlowgateError('ERR_ARG', `mark must be a uint32, got ${String(mark)}`);
    if (4 * (this.#count + 1) > this.#pending.length) {
      const bigger = new Uint32Array(this.#pending.length * 2);
      bigger.set(this.#pending);
      this.#pending = bigger;
    }
    const at = 4 * this.#count++;
    this.#pending[at] = id;
    this.#pending[at + 1] = verdict;
    this.#pending[at + 2] = mark === undefined ? 0 : 1;
    this.#pending[at + 3] = mark ?? 0;
    this.#scheduleFlush();
  }

  /** Outside a batch callback, flushes on the next microtask (once, however many calls ask). */
  #scheduleFlush(): void {
    if (!this.#inBatch && !this.#flushScheduled) {
      this.#flushScheduled = true;
      queueMicrotask(() => {
        this.#flushScheduled = false;
        this.#flushReporting();
      });
    }
  }

  /**
   * Asks the binding to judge the flow's next client packet itself: after a first ClientHello was
   * allowed, the next record tells whether a second hello follows (EVASION.md 19). If the next
   * packet of the connection `key` (src/flow/key.ts) comes from the client (`clientLow`: the
   * client is the key's first endpoint), starts at `seq`, its first record ends the hello's
   * inspection, and it passes `checks` (the engine's checks for fakes a server discards, and its
   * limits: checksum unless the kernel has not computed it, TTL, timestamp, ACK, length; MD5
   * options and IPv6 extension headers always take the caller's path), the
   * binding repeats it with `allowMark` (within `mask`) at once and delivers it flagged
   * ALLOWED_AFTER_HELLO; any other packet of the connection disarms it and comes as usual.
   * Handed over at the next flush outside a batch callback, after the verdicts queued before it;
   * refused (counted in afterHelloRefused) when a packet of the connection (or one the binding
   * cannot attribute) already waits to be delivered, when more than 64 packets wait, or when
   * 65,536 connections are armed.
   */
  expectAfterHello(key: string, clientLow: boolean, seq: number, allowMark: number, mask: number, checks: NextSegmentChecks): void {
    if (this.#native.closed) throw closedError(this.queue);
    if (!isUint32(seq) || !isUint32(allowMark) || !isUint32(mask) || (allowMark & ~mask) !== 0) {
      throw new FlowgateError('ERR_ARG', 'expectAfterHello: seq, allowMark and mask must be uint32s, allowMark within mask');
    }
    this.#allowMark = allowMark;
    this.#mask = mask;
    this.#arms.push({ key, clientLow, seq, checks, hello: undefined, serverNext: -1 });
    this.#scheduleFlush();
  }

  /**
   * Takes back expectAfterHello for the connection `key`, pending or handed over. `afterPacket`:
   * the caller is handling a packet of the connection, which the binding read after any arm it was
   * handed (or the arm was refused), so only a pending arm is left to take back.
   */
  forgetAfterHello(key: string, afterPacket = false): void {
    this.#forget(key, false, afterPacket);
  }

  /**
   * Asks the binding to judge the flow's first client data packet itself, armed on the flow's SYN
   * (the client's, `seq` its sequence number + 1): the server's SYN-ACK answering it is noted
   * (its sequence number is the only ACK the hello may carry), and if the client's next packet
   * starts at `seq`, passes `checks` (as for expectAfterHello, with the SYN's TTL and timestamp),
   * and is exactly one plain ClientHello of at most `arm.maxHelloBytes` (one record, one server
   * name already in normalised form, no ECH, no repeated or malformed extension the analyzer
   * checks) whose name allowHelloName allowed for the packet's server port, the binding repeats it
   * with `arm.mark` (what the engine gives an allowed first hello) at once, delivers it flagged
   * HELLO_ALLOWED, and arms the record after it as expectAfterHello would (with `arm.allowMark`,
   * and, with `arm.strict`, the hello's timestamp and ACK as the oldest kept): the client's next
   * flight may come before the engine has read the hello. Any other packet of the connection
   * disarms it. Handed over and refused as expectAfterHello is (a SYN-ACK already waiting to be
   * delivered does not refuse it).
   */
  expectHello(key: string, clientLow: boolean, seq: number, checks: NextSegmentChecks, arm: HelloArm): void {
    if (this.#native.closed) throw closedError(this.queue);
    if (!isUint32(seq)) throw new FlowgateError('ERR_ARG', 'expectHello: seq must be a uint32');
    this.#takeHelloArm('expectHello', arm);
    this.#arms.push({ key, clientLow, seq, checks, hello: arm, serverNext: -1 });
    this.#scheduleFlush();
  }

  /**
   * With `arm`, the binding arms connections whose bare SYN it reads from the log group
   * (logGroup) itself, as expectHello would with `arm` and `checks` (of which it takes
   * verifyChecksum and maxPayload; the TTL and, with `arm.strict`, the timestamp come from the
   * SYN), and flags the SYN SYN_ARMED_BY_BINDING; JavaScript is then no longer woken early for
   * handshake copies: it reads them with the next wake-up or within 5 ms, as the packets the
   * binding allowed. Only a connection's first SYN is armed: the binding remembers the
   * connection and sequence number of every SYN it reads for at least 130 s (renewed by the
   * SYN-ACK), and does not arm a SYN it remembers (synRepeats), nor any for 130 s after a packet
   * it could not read or lost may have been one (synArmPauses); see native/README.md, "Arming on
   * the SYN". The caller's own expectHello calls still replace an entry. Without `arm`
   * (undefined), the binding stops. For a caller that would arm every new flow it sees with
   * these values (the engine with bindingHellos, while its limits leave room), and takes back
   * (forgetHello) an arm on a flow it would not arm, or whose floors are below its own.
   */
  armHellosOnSyn(arm: HelloArm | undefined, checks: NextSegmentChecks): void {
    if (this.#native.closed) throw closedError(this.queue);
    if (arm !== undefined) this.#takeHelloArm('armHellosOnSyn', arm);
    try {
      this.#native.armHellosOnSyn(arm === undefined ? null : packHelloArm(arm, -1), packChecks(checks));
    } catch (e) {
      throw toFlowgateError(e);
    }
  }

  /** Checks a HelloArm and keeps its marks for alreadyGiven. */
  #takeHelloArm(what: string, arm: HelloArm): void {
    const { mark, allowMark, mask, maxHelloBytes, answerMark = 0 } = arm;
    if (!isUint32(mark) || !isUint32(allowMark) || !isUint32(mask) || ((mark | allowMark) & ~mask) !== 0 || !isUint32(maxHelloBytes)
      || !isUint32(answerMark) || (answerMark & mask) !== 0) {
      throw new FlowgateError('ERR_ARG', `${what}: marks, mask and maxHelloBytes must be uint32s, marks within mask, answerMark outside it`);
    }
    this.#helloMark = mark;
    this.#helloMask = mask;
    this.#allowMark = allowMark;
    this.#mask = mask;
  }

  /**
   * The caller saw the SYN-ACK answering the SYN it armed `key` on with expectHello, whose
   * sequence number + 1 is `serverNext`. Needed while the arm waits for its hand-over (the
   * SYN-ACK came in the same batch as the SYN): once handed over, the binding notes the SYN-ACK
   * itself, and this does nothing.
   */
  helloAnswered(key: string, serverNext: number): void {
    if (!isUint32(serverNext)) throw new FlowgateError('ERR_ARG', 'helloAnswered: serverNext must be a uint32');
    for (const a of this.#arms) if (a.key === key && a.hello !== undefined) a.serverNext = serverNext;
  }

  /** Takes back expectHello for the connection `key`, as forgetAfterHello does. */
  forgetHello(key: string, afterPacket = false): void {
    this.#forget(key, true, afterPacket);
  }

  /**
   * Takes back one kind of arm: the binding arms the record after a hello it let on itself, which
   * taking back that hello's arm must leave.
   */
  #forget(key: string, hello: boolean, afterPacket: boolean): void {
    if (this.#native.closed) throw closedError(this.queue);
    const i = this.#arms.findIndex((a) => a.key === key && (a.hello !== undefined) === hello);
    if (i >= 0) this.#arms.splice(i, 1);
    else if (!afterPacket) this.#native.forget(keyUnits(key), key.length, hello);
  }

  /**
   * Tells the binding that the policy allows a plain first ClientHello naming `name` (normalised:
   * lowercase, no trailing dot) to server port `port`, whatever else the flow is (see expectHello).
   * False when the binding already holds 65,536 other names (clearHelloNames starts over).
   */
  allowHelloName(name: string, port: number): boolean {
    if (this.#native.closed) throw closedError(this.queue);
    if (typeof name !== 'string' || !Number.isInteger(port) || port < 0 || port > 0xffff) {
      throw new FlowgateError('ERR_ARG', 'allowHelloName: name must be a string and port an integer from 0 to 65535');
    }
    return this.#native.allowHelloName(name, port);
  }

  /** Forgets every name allowHelloName gave (the policy changed). */
  clearHelloNames(): void {
    if (this.#native.closed) throw closedError(this.queue);
    this.#native.clearHelloNames();
  }

  /**
   * Inside a batch of at most QUIET_BATCH_PACKETS packets, sends the verdicts queued so far now
   * instead of when the callback returns: on a quiet gateway a released packet then does not wait
   * for the bookkeeping that follows its decision. In larger batches (a busy gateway) verdicts
   * keep leaving together, one send per batch.
   */
  flushIfQuiet(): void {
    // Verdicts only (flush inside a batch): expectAfterHello waits for the end of the batch, whose
    // later packets the caller has not seen yet (one of them may be the packet it would expect).
    if (this.#inBatch && this.#batchCount <= QUIET_BATCH_PACKETS) this.#flushReporting();
  }

  /**
   * Hands every queued verdict to the sender thread now (it sends one datagram per ~64 KiB of
   * verdicts), then, outside a batch callback, the expectAfterHello calls (inside one they wait for
   * its end: its later packets are not seen yet).
   */
  flush(): void {
    if (this.#native.closed) throw closedError(this.queue);
    this.#sendVerdicts();
    if (this.#arms.length > 0 && !this.#inBatch) this.#handOverArms();
  }

  #sendVerdicts(): void {
    if (this.#count === 0) return;
    const n = this.#count;
    this.#count = 0;
    try {
      this.#native.verdicts(this.#pending, n);
    } catch (e) {
      throw toFlowgateError(e);
    }
  }

  #handOverArms(): void {
    const arms = this.#arms;
    this.#arms = [];
    for (const a of arms) {
      const hello = a.hello !== undefined;
      let armed: boolean;
      try {
        armed = hello
          ? this.#native.expectHello(keyUnits(a.key), a.key.length, a.clientLow, a.seq, packChecks(a.checks),
            packHelloArm(a.hello!, a.serverNext))
          : this.#native.expectAfterHello(keyUnits(a.key), a.key.length, a.clientLow, a.seq, this.#allowMark, this.#mask,
            packChecks(a.checks));
      } catch (e) {
        throw toFlowgateError(e);
      }
      if (hello) {
        if (armed) this.#helloArmed++;
        else this.#helloRefused++;
      } else if (armed) this.#afterHelloArmed++;
      else this.#afterHelloRefused++;
    }
  }

  /** Injects a complete IPv4 or IPv6 packet (e.g. a TCP RST) via a raw socket; `mark` sets SO_MARK for it. */
  sendRaw(packet: Uint8Array, mark?: number): void {
    if (this.#native.closed) throw closedError(this.queue);
    if (!(packet instanceof Uint8Array)) throw new FlowgateError('ERR_ARG', 'sendRaw: packet must be a Uint8Array');
    if (mark !== undefined && !isUint32(mark)) throw new FlowgateError('ERR_ARG', `mark must be a uint32, got ${String(mark)}`);
    try {
      this.#native.sendRaw(packet, mark);
    } catch (e) {
      throw toFlowgateError(e);
    }
  }

  /** Current counters (throws ERR_QUEUE_CLOSED after close: read them before). */
  stats(): QueueStats {
    if (this.#native.closed) throw closedError(this.queue);
    return {
      ...this.#native.stats(), handshakeOverrides: this.#handshakeOverrides, afterHelloOverrides: this.#afterHelloOverrides,
      afterHelloArmed: this.#afterHelloArmed, afterHelloRefused: this.#afterHelloRefused,
      helloOverrides: this.#helloOverrides, helloArmed: this.#helloArmed, helloRefused: this.#helloRefused,
    };
  }

  /**
   * The caller's verdict for a packet the binding gave its own (its M_FLAGS carry
   * ACCEPTED_BY_BINDING, ALLOWED_AFTER_HELLO or HELLO_ALLOWED): nothing is sent, but a verdict
   * other than the binding's is counted in stats(): for a handshake anything but NF_ACCEPT
   * (handshakeOverrides); after a hello, or for a hello, anything but an accept or a repeat with
   * the mark the binding gave (afterHelloOverrides, helloOverrides).
   */
  alreadyGiven(flags: number, verdict: number, mark?: number): void {
    const marked = (value: number, mask: number) => verdict === NF_ACCEPT || (verdict === NF_REPEAT && ((mark ?? 0) & mask) === value);
    if (flags & ACCEPTED_BY_BINDING) {
      if (verdict !== NF_ACCEPT) this.#handshakeOverrides++;
    } else if (flags & ALLOWED_AFTER_HELLO) {
      if (!marked(this.#allowMark, this.#mask)) this.#afterHelloOverrides++;
    } else if (flags & HELLO_ALLOWED) {
      if (!marked(this.#helloMark, this.#helloMask)) this.#helloOverrides++;
    }
  }

  /** Sends queued verdicts, unbinds and closes the socket. Idempotent. */
  close(): void {
    if (this.#native.closed) return;
    this.#flushReporting();
    this.#native.close();
  }

  #flushReporting(): void {
    if ((this.#count === 0 && this.#arms.length === 0) || this.#native.closed) return;
    try {
      this.flush();
    } catch (e) {
      this.#report(toFlowgateError(e));
    }
  }

  /** Hands an error to onError; if onError itself throws, that becomes an uncaught exception. */
  #report(err: FlowgateError): void {
    try {
      this.#onError(err);
    } catch (e) {
      queueMicrotask(() => {
        throw e;
      });
    }
  }

  #deliver(data: Buffer, meta: Uint32Array, count: number): void {
    this.#inBatch = true;
    this.#batchCount = count;
    try {
      this.#onBatch({ data, meta, count });
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      this.#report(new FlowgateError('ERR_QUEUE_CALLBACK', `onBatch threw: ${message}`, { cause: e }));
    } finally {
      this.#inBatch = false;
      this.#flushReporting();
    }
  }
}

/** The payload (IP packet) of packet `i` of a batch, as a view into batch.data. */
export function packetPayload(batch: PacketBatch, i: number): Buffer {
  const at = i * META_STRIDE;
  const off = batch.meta[at + M_OFF];
  return batch.data.subarray(off, off + batch.meta[at + M_LEN]);
}

/** The SKB_* bits of a packet's M_FLAGS slot. */
export function skbInfoOf(flags: number): number {
  return flags & 0x1f;
}

/** The netfilter hook (NF_INET_PRE_ROUTING = 0 ... NF_INET_POST_ROUTING = 4) of a packet's M_FLAGS slot. */
export function hookOf(flags: number): number {
  return (flags >>> 8) & 0x1f; // bits 13-15 are ANSWERED_BY_KERNEL, SYN_ARMED_BY_BINDING and LOGGED_BY_KERNEL
}

/** The hardware protocol (0x0800 IPv4, 0x86dd IPv6) of a packet's M_FLAGS slot. */
export function hwProtocolOf(flags: number): number {
  return flags >>> 16;
}
