// The N-API class behind src/capture/queue.ts: one bound NFQUEUE, its netlink socket, the
// uv_poll_t that drains it into batches, batched verdicts and raw packet injection.
#pragma once

#include <napi.h>
#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "sender.h"
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
};

/** JS class `Queue(opts, onBatch, onError?)`: binds on construction, see native/README.md. */
class Queue : public Napi::ObjectWrap<Queue> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit Queue(const Napi::CallbackInfo& info);
  ~Queue() override;

  /** Called from the uv poll/timer callbacks: drain the socket and deliver one batch. */
  void OnReadable();
  /** Called when uv reports the poll handle itself failed. */
  void OnPollError(int uvStatus);
  /** Called on the loop after the sender thread failed to send verdicts: reports ERR_QUEUE_SEND. */
  void OnSendFailure();

 private:
  Napi::Value Verdicts(const Napi::CallbackInfo& info);
  Napi::Value SendRaw(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value GetClosed(const Napi::CallbackInfo& info);

  bool OpenAndBind(Napi::Env env, const BindConfig& cfg, uint32_t rcvbuf);
  int Drain(bool ignoreLimit);
  void ProcessDatagram(size_t start, size_t len);
  void DeliverBatch();
  void DeliverError(const char* code, int err, const std::string& message);
  void CallOnError(napi_value error);
  void AcceptHandshakes();
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

  // Batch under construction: payloads back to back in data_[0, used_), 8 uint32 per packet.
  std::vector<uint8_t> data_;
  size_t used_ = 0;
  std::vector<uint32_t> meta_;
  uint32_t count_ = 0;
  // Batch indexes of the bare handshake packets to accept before the batch reaches JS.
  std::vector<uint32_t> handshakes_;

  std::vector<uint8_t> send_;  // verdict messages being built on the JS thread
  VerdictSender sender_;
  QueueCounters counters_;

  Napi::FunctionReference onBatch_;
  Napi::FunctionReference onError_;
  std::unique_ptr<Napi::AsyncContext> asyncContext_;
  LoopHandles* handles_ = nullptr;
};

}  // namespace fg
