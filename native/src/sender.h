// The verdict sender: one thread per queue that hands verdict messages to the kernel, so the
// JavaScript thread never waits in send(). A verdict's send() is where the kernel reinjects
// the packet and, on a gateway, forwards it and runs the receiving side's network stack in the
// same call: on the JavaScript thread that was half its busy time under new-connection load
// (bench/RESULTS.md, "What dominates"). See native/README.md ("Verdicts").
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace fg {

/** Sends with retries: EAGAIN/ENOBUFS are retried for up to kSendRetryMs. Returns 0 or errno. */
int SendWithRetry(int fd, const void* buf, size_t len, const void* addr, unsigned addrLen);

/** Names thread `t` "fg-q<queue>-<role>" (15 bytes at most), so `top -H` and perf tell the binding's
 * threads from Node's. Called by the creator, so the name is set once the creating call returns. */
void NameThread(std::thread& t, const char* role, uint16_t queue);

class VerdictSender {
 public:
  /** What the thread has done so far. */
  struct Counts {
    uint64_t verdicts = 0;  // verdict messages the kernel took
    uint64_t sends = 0;     // send() calls that carried them
    uint64_t errors = 0;    // datagrams that could not be sent
  };

  VerdictSender() = default;
  VerdictSender(const VerdictSender&) = delete;
  VerdictSender& operator=(const VerdictSender&) = delete;
  ~VerdictSender() { Stop(); }

  /** Starts the thread on the netlink socket `fd` (not owned). `onFailure` runs on that thread. */
  void Start(int fd, uint16_t queue, void (*onFailure)(void*), void* arg);

  /**
   * Queues `count` verdict messages lying back to back in msgs[0, bytes). They are sent in
   * order, after everything pushed before, packed into datagrams of at most kSendChunk bytes.
   */
  void Push(const uint8_t* msgs, size_t bytes, size_t count);

  /** Waits until everything pushed so far was sent or failed, at most timeoutMs. */
  void WaitIdle(int timeoutMs);

  /** Sends what is still queued, then ends the thread. Idempotent. */
  void Stop();

  Counts Snapshot();

  /** The failures since the last call: verdicts not sent and the last errno; false if none. */
  bool TakeFailure(uint64_t* failed, int* err);

 private:
  void Run();
  void SendAll(const uint8_t* msgs, size_t bytes);

  int fd_ = -1;
  void (*onFailure_)(void*) = nullptr;
  void* arg_ = nullptr;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable wake_;  // something to send, or stop
  std::condition_variable idle_;  // the thread sent everything it had
  std::vector<uint8_t> pending_;  // guarded by mu_
  bool busy_ = false;             // the thread holds messages it has not finished sending
  int inline_ = 0;                // callers sending their own messages right now (see Push)
  bool stop_ = false;
  Counts counts_;                 // guarded by mu_
  uint64_t failed_ = 0;           // guarded by mu_: verdicts lost since TakeFailure
  int lastErr_ = 0;
};

}  // namespace fg
