// The N-API class behind src/capture/queue.ts: one bound NFQUEUE, its netlink socket, the
// uv_poll_t that drains it into batches, batched verdicts and raw packet injection.
#pragma once

#include <napi.h>
#include <uv.h>

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "sender.h"
#include "syn_memory.h"
#include "wire.h"

namespace fg {

struct LoopHandles;

/** Counters returned by stats(); all only ever grow. */
struct QueueCounters {
  uint64_t received = 0;      // packets delivered to JS (or pending delivery)
  uint64_t batches = 0;       // onBatch calls
  uint64_t enobufs = 0;       // recv() said ENOBUFS: the kernel dropped messages for us
  uint64_t sendErrors = 0;    // raw packets that could not be sent (verdicts: VerdictSender)
  uint64_t recvErrors = 0;    // other recv() failures, truncated or malformed messages
  uint64_t kernelErrors = 0;  // NLMSG_ERROR replies to verdicts (e.g. ENOENT: unknown id)
  uint64_t handshakeAccepts = 0;  // bare SYN/SYN-ACKs accepted here before JS saw them
  uint64_t batchesHandedOver = 0;  // batches given to JS without a copy (kHandOverMinBytes)
  uint64_t afterHelloAllows = 0;  // client data after a ClientHello allowed here (expectAfterHello)
  uint64_t helloAllows = 0;       // first ClientHellos allowed here (expectHello)
  uint64_t tailAllows = 0;        // packets behind a record allowed here, read before the rules saved its mark
  uint64_t synArms = 0;           // connections armed here on their SYN (armHellosOnSyn)
  uint64_t synRepeats = 0;        // SYNs of a connection whose first SYN the reader remembers: not armed
  uint64_t synArmPauses = 0;      // times arming on the SYN paused for kSynMemoryMs (a packet unread or lost)
  uint64_t logged = 0;            // bare SYN/SYN-ACKs read from the NFLOG group (logGroup)
  uint64_t logIgnored = 0;        // other packets logged to the group (the rules log none)
  uint64_t helloAnswerMarks = 0;  // hellos let on here with the answer mark (CheckHello)
  uint64_t answered = 0;          // copies of a server's ServerHello that ended a hello's inspection (kAnswerPrefix)
  uint64_t logEnobufs = 0;        // the group's socket overflowed: handshakes lost
  uint64_t logBehind = 0;         // the reader left copies in the group's socket (kLogBacklog)
};

/**
 * A connection whose next client record decides whether a first ClientHello was its last
 * (expectAfterHello), with what the engine's checks for fakes the server would discard need.
 */
struct AfterHelloExpectation {
  uint32_t seq;          // where the next record starts
  uint32_t allow;        // the allow mark value, within mask
  uint32_t mask;         // flowgate's mark bits
  bool clientLow;        // the client is the key's first endpoint
  FakeChecks checks;
  int64_t since;         // NowMs() when armed, for expiry
};

/**
 * A connection whose first client data packet the reader may allow itself if it is a plain
 * ClientHello naming an allowed name (expectHello), armed on the engine's view of the SYN.
 */
struct HelloExpectation {
  uint32_t seq;            // the client's ISN + 1: where the hello starts
  uint32_t mark;           // the mark value the engine repeats an allowed first hello with
  uint32_t allowMark;      // the allow mark, for the record after the hello (ArmAfterPlainHello)
  uint32_t mask;           // the bits the reader's verdicts replace: flowgate's mask and the answer mark
  uint32_t answerMark;     // a bit outside the mask added to `mark` when the server's answer may end inspection, or 0
  bool clientLow;          // the client is the key's first endpoint
  bool strict;             // the engine checks ACKs and timestamps (strict_tcp)
  bool serverSeen;         // the SYN-ACK answering the SYN came (serverNext is set)
  uint32_t serverNext;     // its sequence number + 1: the only ACK the hello may carry
  uint32_t maxHelloBytes;  // the engine's limit on a hello's body
  FakeChecks checks;
  int64_t since;           // NowMs() when armed, for expiry
};

/**
 * A connection whose record after the hello the reader allowed (CheckAfterHello): the rules save
 * the allow mark to the connection only when that verdict reinjects the record, so the client's
 * packets sent right behind it (its request behind its Finished) may already be queued. The
 * engine gives those stragglers of a decided flow the allow mark (its tombstone); so does the
 * reader, for kTailMs.
 */
struct AllowedTail {
  uint32_t allow;  // the allow mark value, within mask
  uint32_t mask;
  int64_t since;   // NowMs() when the record was allowed
};

/** A verdict the reader thread gives itself, before JavaScript sees the packet. */
struct EarlyVerdict {
  uint32_t id;
  uint32_t verdict;
  bool hasMark;
  uint32_t mark;
};

/** Packets read but not yet handed to JavaScript: payloads back to back, kMetaStride uint32 each. */
struct Batch {
  std::vector<uint8_t> data;
  std::vector<uint32_t> meta;
  uint32_t count = 0;
  void Clear() {
    data.clear();
    meta.clear();
    count = 0;
  }
};

/** JS class `Queue(opts, onBatch, onError?)`: binds on construction, see native/README.md. */
class Queue : public Napi::ObjectWrap<Queue> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit Queue(const Napi::CallbackInfo& info);
  ~Queue() override;

  /** Called on the loop when the reader thread has packets or an error for JavaScript. */
  void OnReady();
  /** Called on the loop after the sender thread failed to send verdicts: reports ERR_QUEUE_SEND. */
  void OnSendFailure();

 private:
  Napi::Value Verdicts(const Napi::CallbackInfo& info);
  Napi::Value SendRaw(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value GetClosed(const Napi::CallbackInfo& info);
  Napi::Value ExpectAfterHello(const Napi::CallbackInfo& info);
  Napi::Value Forget(const Napi::CallbackInfo& info);
  Napi::Value ExpectHello(const Napi::CallbackInfo& info);
  Napi::Value ArmHellosOnSyn(const Napi::CallbackInfo& info);
  Napi::Value AllowHelloName(const Napi::CallbackInfo& info);
  Napi::Value ClearHelloNames(const Napi::CallbackInfo& info);

  bool OpenAndBind(Napi::Env env, const BindConfig& cfg, uint32_t rcvbuf);
  bool OpenLog(Napi::Env env, uint16_t group, uint32_t rcvbuf);
  void CloseLog();
  int ReadAvailable(bool ignoreLimit);
  int ReadUntilDrained(int fd, std::vector<uint8_t>& buf, bool ignoreLimit);
  bool ProcessDatagram(uint8_t* base, size_t len);
  void ProcessLogDatagram(uint8_t* base, size_t len);
  void AppendAnswerLocked(PacketInfo* pkt);
  void AppendPendingLocked(const PacketInfo& pkt, uint32_t flags);
  void NoteReplyLocked(const MsgResult& r);
  int AwaitAck(int fd, uint32_t seq);
  void ReaderLoop();
  void ReportReadError(int err, const char* what);
  void SignalLocked();
  void StopReader();
  void DeliverBatch();
  void DeliverError(const char* code, int err, const std::string& message);
  void CallOnError(napi_value error);
  void SendEarlyVerdicts();
  uint32_t CheckArmed(const PacketInfo& pkt);
  uint32_t CheckReadArmed(const PacketInfo& pkt);
  bool CheckHello(const PacketInfo& pkt);
  void ArmAfterPlainHello(const HelloExpectation& e);
  bool CheckAfterHello(const PacketInfo& pkt);
  bool CheckTail(const PacketInfo& pkt);
  bool AnyArmedLocked() const;
  bool ArmOnSyn();
  bool RememberSyn();
  void PauseSynArmingLocked();
  void ForgetAllArmedLocked();
  bool PendingHasKey(const std::u16string& key);
  template <class Fn>
  bool EachPendingOf(const std::u16string& key, Fn onPacket);
  bool PendingAllowsHello(const std::u16string& key, HelloExpectation* e);
  enum class ShutdownMode { FromJs, FromCleanupHook, FromFinalizer };
  void Shutdown(ShutdownMode mode);
  void ReleaseJsRefs();
  bool ThrowIfClosed(Napi::Env env);
  static void CleanupHook(void* arg);

  napi_env env_ = nullptr;
  int fd_ = -1;
  int raw4_ = -1, raw6_ = -1;
  uint32_t raw4Mark_ = 0, raw6Mark_ = 0;
  uint16_t queue_ = 0;
  int logFd_ = -1;       // the NFLOG group's socket (logGroup), or -1
  uint16_t logGroup_ = 0;
  uint32_t batchMax_ = 512;
  bool acceptHandshake_ = false;
  uint32_t seq_ = 0;
  bool closed_ = true;
  bool cleanupHookAdded_ = false;
  int inCallback_ = 0;
  bool refsPending_ = false;  // close() ran inside a callback: drop JS refs after it

  // Bind handshake: the seq we wait an answer for, and the answer (-1 = none yet).
  uint32_t waitSeq_ = 0;
  int ackErr_ = -1;

  // Receiving (queue_recv.cc). The reader thread owns rx_, early_, earlyMsgs_ and wakeDeferred_
  // (used without the lock); rmu_ guards the rest of this block and counters_, which
  // JavaScript-side calls read.
  std::thread reader_;
  int wakeFd_ = -1;                // eventfd: ends the reader's poll() when the queue closes
  std::vector<uint8_t> rx_;        // one datagram
  std::vector<uint8_t> logRx_;     // one datagram of the log group's socket
  std::vector<EarlyVerdict> early_;  // verdicts the reader gives in the datagram being read
  std::vector<uint8_t> earlyMsgs_;   // their messages, built here (reused)
  TcpView tcp_;                      // scratch for CheckArmed (keeps its key's capacity)
  std::string helloName_;            // scratch for CheckHello
  std::mutex rmu_;
  std::condition_variable taken_;  // the loop took the pending batch, or the reader must stop
  bool stopReader_ = false;
  bool signalled_ = false;         // a wake-up of the loop is on its way
  bool wakeDeferred_ = false;      // a wake-up waits for the socket to be drained (ReadAvailable)
  int64_t lastSignalMs_ = 0;       // NowMs() of the last wake-up of the loop (SignalLocked)
  int64_t lazySince_ = 0;          // NowMs() when the oldest pending packet that waits for no wake-up came, or 0
  Batch pending_;                  // read, not yet taken by the loop
  Batch delivering_;               // loop thread only: the batch being handed to JS
  int readErr_ = 0;                // a receive failure for onError (errno), 0 if none
  bool logFailed_ = false;         // the last receive failure was the log group's socket's
  std::string readErrWhat_;
  // Flows whose next client data packet the reader may allow itself (expectAfterHello), by key.
  std::unordered_map<std::u16string, AfterHelloExpectation> afterHello_;
  // Flows whose first client data packet the reader may allow itself (expectHello), by key, and
  // the names (with the server port) the policy allows for them: name, a zero byte, the port's two bytes.
  std::unordered_map<std::u16string, HelloExpectation> hello_;
  std::unordered_set<std::string> helloNames_;
  // Connections allowed after their hello, for their packets already queued (AllowedTail), by key.
  std::unordered_map<std::u16string, AllowedTail> tail_;
  int64_t helloSweptMs_ = 0, afterHelloSweptMs_ = 0, tailSweptMs_ = 0;  // when RoomIn last swept each table
  // armHellosOnSyn: while set, each bare client SYN the reader reads arms its connection as the
  // engine's expectHello would (autoArm_ holds the marks and limits; its checks the template).
  bool autoArmOn_ = false;
  HelloExpectation autoArm_{};
  // What keeps arming on the SYN from arming a repeated SYN (RememberSyn), and the time until
  // which it is paused because a SYN may have gone by unremembered (PauseSynArmingLocked).
  SynMemory synMemory_;
  int64_t synArmPausedUntil_ = 0;

  std::vector<uint8_t> send_;  // verdict messages being built on the JS thread
  VerdictSender sender_;
  QueueCounters counters_;

  Napi::FunctionReference onBatch_;
  Napi::FunctionReference onError_;
  std::unique_ptr<Napi::AsyncContext> asyncContext_;
  LoopHandles* handles_ = nullptr;
};

}  // namespace fg
