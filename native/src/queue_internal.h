// Shared between queue.cc (lifecycle), queue_recv.cc and queue_send.cc: limits, the uv
// handle pair, and the poll callback. Not part of the module's interface.
#pragma once

#include <time.h>
#include <uv.h>

#include <cstddef>
#include <cstdint>

namespace fg {

class Queue;

/** Largest datagram we accept: copy_range (<= 65531, NFQNL_MAX_COPY_RANGE) plus attributes. */
constexpr size_t kRecvMax = 65536 + 8192;
/** A batch stops growing once its payload bytes pass this, whatever batchMaxPackets says. */
constexpr size_t kBatchMaxBytes = 16u << 20;
/**
 * A batch with at least this many payload bytes is handed to JavaScript as it is (an external
 * Buffer over the batch's own memory, freed when JavaScript lets go of it) instead of copied:
 * with every packet queued, copying 64 KB GSO payloads was the loop thread's largest cost. A
 * smaller batch is copied, so its memory is reused and a small packet never keeps a large
 * buffer alive.
 */
constexpr size_t kHandOverMinBytes = 256u << 10;
/** Capacity a batch gets again after its memory was handed over, so the reader does not regrow it. */
constexpr size_t kBatchReserve = 1u << 20;
/** Verdict messages are packed into datagrams of at most this many bytes. */
constexpr size_t kSendChunk = 64u << 10;
/**
 * How long packets the reader allowed itself (a plain hello, the record after a hello) may wait
 * for JavaScript, ms: JavaScript only keeps its books with them, and on a quiet gateway doing so
 * at once ran beside the endpoints' own work on the connection (their TLS handshake), slowing it;
 * any other wake-up brings them along sooner.
 */
constexpr int64_t kLazyWakeMs = 5;
/** How long open() waits for the kernel's answer to the bind message, ms. */
constexpr int kAckTimeoutMs = 2000;
/** How long one send() keeps retrying EAGAIN/ENOBUFS before it counts as failed, ms. */
constexpr int kSendRetryMs = 1000;
/** Uint32 slots per packet in the meta array (queue.ts META_STRIDE). */
constexpr size_t kMetaStride = 8;
/** Meta slot 4 bit: the binding already accepted this packet (acceptHandshake). */
constexpr uint32_t kFlagAccepted = 0x80;
/** Meta slot 4 bit: the binding already allowed this packet after a ClientHello (expectAfterHello). */
constexpr uint32_t kFlagAfterHello = 0x40;
/** Meta slot 4 bit: the binding already allowed this first ClientHello (expectHello). */
constexpr uint32_t kFlagHelloAllowed = 0x20;
/**
 * Words of expectHello's `arm` array: mark, allowMark, mask, maxHelloBytes, strict, serverKnown,
 * serverNext, answerMark (a bit outside the mask, or 0: see CheckHello).
 */
constexpr size_t kHelloArmWords = 8;
/**
 * Meta slot 4 bit: the packet is an NFLOG copy of a bare SYN/SYN-ACK the rules accepted (logGroup):
 * it has no id and takes no verdict. Set together with kFlagAccepted and kSkbCsumNotReady.
 */
constexpr uint32_t kFlagLogged = 0x8000;
/**
 * Meta slot 4 bit, with kFlagLogged: the reader armed the connection on this SYN itself
 * (armHellosOnSyn, ArmOnSyn); the hook takes bits 8-12 (bit 13 is kFlagAnswered).
 */
constexpr uint32_t kFlagSynArmed = 0x4000;
/**
 * Meta slot 4 bit, with kFlagLogged: the copy the rules send of a server's ServerHello that ended
 * the inspection of a hello let on with the answer mark (kAnswerPrefix), cut to its headers; the
 * hook takes bits 8-12.
 */
constexpr uint32_t kFlagAnswered = 0x2000;
/** Bytes of each logged packet the group copies: the largest IPv4 or IPv6 and TCP headers fit. */
constexpr uint32_t kLogCopyRange = 256;
/** The log group's socket gets this many times the queue's receive buffer: a lost copy makes a flow midstream. */
constexpr uint32_t kLogRcvbufFactor = 4;
/** The reader stops reading the log group while this many batches (batchMaxPackets) wait for JavaScript. */
constexpr uint32_t kLogBacklog = 4;
/** Meta slot 4 bits that carry NFQA_SKB_INFO (the kernel defines bits 0-2). */
constexpr uint32_t kSkbInfoBits = 0x1f;
/** Most names (with their port) allowed for expectHello at once; more are refused. */
constexpr size_t kMaxHelloNames = 65536;
/** Most connections armed at once (each table); more are refused (they take the JavaScript path). */
constexpr size_t kMaxAfterHello = 65536;
/** Past this many armed connections (in one table), arming first drops those armed longer than kAfterHelloExpiryMs ago. */
constexpr size_t kAfterHelloSweepAt = 4096;
/** An armed-connection table is swept at most this often, ms (RoomIn). */
constexpr int64_t kSweepEveryMs = 1000;
/** A connection armed this long ago that sent nothing since is disarmed when the table is swept, ms. */
constexpr int64_t kAfterHelloExpiryMs = 60000;
/**
 * How long after the reader allowed a record after a hello it gives the connection's later
 * queued packets the allow mark too (AllowedTail), ms: they were sent before the rules saved the
 * mark, so they are at most a queue's wait behind it.
 */
constexpr int64_t kTailMs = 1000;
/**
 * How long the reader remembers at least the SYNs it read (SynMemory), ms: longer than the largest
 * gap between a server's SYN-ACK retransmissions (Linux's TCP_RTO_MAX, 120 s), and each SYN-ACK
 * renews its SYN's memory, so no SYN-ACK can answer a SYN the reader took for a first one while
 * it was a repeat.
 */
constexpr int64_t kSynMemoryMs = 130000;
/** expectAfterHello and expectHello refuse while more packets than this wait for JavaScript (they scan them). */
constexpr uint32_t kMaxPendingScan = 64;

inline int64_t NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

/** The uv handles of an open queue; freed once every close callback ran. */
struct LoopHandles {
  uv_async_t ready;    // the reader thread has packets or an error for JavaScript
  uv_async_t failed;   // the sender thread could not send verdicts
  Queue* owner;     // null once the queue closed
  int openHandles;
};


}  // namespace fg
