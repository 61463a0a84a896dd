// The Queue class, lifecycle part: options, socket setup and the bind handshake, the uv
// handles, stats, close. Receiving is in queue_recv.cc, sending in queue_send.cc, netlink
// framing in wire.cc. Errors cross to JS as Error objects with `code` and `errno`, which
// src/capture/queue.ts turns into FlowgateError.
#include "queue.h"

#include <arpa/inet.h>
#include <linux/netfilter.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "errors.h"
#include "queue_internal.h"

namespace fg {
namespace {

/** Is `num` the first column of a line of `path` (/proc/net/netfilter/nfnetlink_queue or _log)? */
bool ProcListed(const char* path, uint16_t num) {
  FILE* f = std::fopen(path, "re");
  if (f == nullptr) return false;
  char line[256];
  bool found = false;
  while (!found && std::fgets(line, sizeof line, f) != nullptr) {
    unsigned n;
    if (std::sscanf(line, "%u", &n) == 1 && n == num) found = true;
  }
  std::fclose(f);
  return found;
}

// Reads an optional non-negative integer option; false (with a JS error thrown) when invalid.
bool ReadUint(Napi::Env env, Napi::Object opts, const char* key, uint32_t min, uint32_t max,
              uint32_t* out) {
  Napi::Value v = opts.Get(key);
  if (v.IsUndefined()) return true;
  if (!v.IsNumber()) {
    ThrowCodeError(env, "ERR_ARG", 0, std::string("option ") + key + " must be a number");
    return false;
  }
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= min && d <= max) || d != static_cast<double>(static_cast<uint64_t>(d))) {
    ThrowCodeError(env, "ERR_ARG", 0,
                   std::string("option ") + key + " must be an integer in " +
                       std::to_string(min) + ".." + std::to_string(max));
    return false;
  }
  *out = static_cast<uint32_t>(d);
  return true;
}

bool ReadBool(Napi::Env env, Napi::Object opts, const char* key, bool* out) {
  Napi::Value v = opts.Get(key);
  if (v.IsUndefined()) return true;
  if (!v.IsBoolean()) {
    ThrowCodeError(env, "ERR_ARG", 0, std::string("option ") + key + " must be a boolean");
    return false;
  }
  *out = v.As<Napi::Boolean>().Value();
  return true;
}

void OnHandleClosed(uv_handle_t* h) {
  auto* lh = static_cast<LoopHandles*>(h->data);
  if (--lh->openHandles == 0) delete lh;
}

void OnReadyAsync(uv_async_t* a) {
  auto* lh = static_cast<LoopHandles*>(a->data);
  if (lh->owner != nullptr) lh->owner->OnReady();
}

void OnSendFailed(uv_async_t* a) {
  auto* lh = static_cast<LoopHandles*>(a->data);
  if (lh->owner != nullptr) lh->owner->OnSendFailure();
}

// Runs on the sender thread: wake the loop, which reports the failure (uv_async_send is the one
// libuv call that is safe from another thread). The thread ends before the handle closes.
void WakeForFailure(void* arg) {
  uv_async_send(&static_cast<LoopHandles*>(arg)->failed);
}

}  // namespace

Napi::Function Queue::Init(Napi::Env env) {
  return DefineClass(env, "Queue",
                     {
                         InstanceMethod<&Queue::Verdicts>("verdicts"),
                         InstanceMethod<&Queue::SendRaw>("sendRaw"),
                         InstanceMethod<&Queue::Stats>("stats"),
                         InstanceMethod<&Queue::Close>("close"),
                         InstanceMethod<&Queue::ExpectAfterHello>("expectAfterHello"),
                         InstanceMethod<&Queue::Forget>("forget"),
                         InstanceMethod<&Queue::ExpectHello>("expectHello"),
                         InstanceMethod<&Queue::ArmHellosOnSyn>("armHellosOnSyn"),
                         InstanceMethod<&Queue::AllowHelloName>("allowHelloName"),
                         InstanceMethod<&Queue::ClearHelloNames>("clearHelloNames"),
                         InstanceAccessor<&Queue::GetClosed>("closed"),
                     });
}

Queue::Queue(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Queue>(info) {
  Napi::Env env = info.Env();
  env_ = env;
  if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsFunction() ||
      !(info[2].IsUndefined() || info[2].IsFunction())) {
    ThrowCodeError(env, "ERR_ARG", 0, "Queue(opts: object, onBatch: function, onError?: function)");
    return;
  }
  Napi::Object opts = info[0].As<Napi::Object>();
  uint32_t queue = 0x10000, maxLen = 65536, copyRange = 65535;
  uint32_t rcvbuf = 8u << 20, batchMax = 512;
  uint32_t logGroup = 0x10000;  // none
  bool gso = true, failOpen = false, acceptHandshake = false;
  if (!opts.Get("queue").IsNumber()) {
    ThrowCodeError(env, "ERR_ARG", 0, "option queue is required (0..65535)");
    return;
  }
  if (!ReadUint(env, opts, "queue", 0, 65535, &queue) ||
      !ReadUint(env, opts, "maxLen", 1, 0xffffffffu, &maxLen) ||
      !ReadUint(env, opts, "copyRange", 1, 65535, &copyRange) ||
      !ReadUint(env, opts, "rcvbufBytes", 4096, 1u << 30, &rcvbuf) ||
      !ReadUint(env, opts, "batchMaxPackets", 1, 65536, &batchMax) ||
      !ReadBool(env, opts, "gso", &gso) || !ReadBool(env, opts, "failOpen", &failOpen) ||
      !ReadBool(env, opts, "acceptHandshake", &acceptHandshake) ||
      !ReadUint(env, opts, "logGroup", 0, 65535, &logGroup)) {
    return;
  }
  queue_ = static_cast<uint16_t>(queue);
  batchMax_ = batchMax;

  // The log group first: from the queue's first packet on, the handshakes before it are read.
  uint32_t logRcvbuf = rcvbuf > (1u << 30) / kLogRcvbufFactor ? 1u << 30 : rcvbuf * kLogRcvbufFactor;
  if (logGroup <= 65535 && !OpenLog(env, static_cast<uint16_t>(logGroup), logRcvbuf)) return;
  BindConfig cfg{queue_, maxLen, copyRange, gso, failOpen};
  if (!OpenAndBind(env, cfg, rcvbuf)) {
    CloseLog();
    return;
  }
  // Only now: a packet read while waiting for the bind ack must get its verdict from JavaScript,
  // since the sender thread that would carry the binding's own verdict is not running yet.
  acceptHandshake_ = acceptHandshake;

  onBatch_ = Napi::Persistent(info[1].As<Napi::Function>());
  if (info[2].IsFunction()) onError_ = Napi::Persistent(info[2].As<Napi::Function>());
  asyncContext_ = std::make_unique<Napi::AsyncContext>(env, "flowgate_nfqueue");

  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  handles_ = new LoopHandles();
  handles_->owner = this;
  handles_->openHandles = 2;
  uv_async_init(loop, &handles_->ready, OnReadyAsync);  // referenced: an open queue keeps the loop alive
  uv_async_init(loop, &handles_->failed, OnSendFailed);
  uv_unref(reinterpret_cast<uv_handle_t*>(&handles_->failed));
  handles_->ready.data = handles_;
  handles_->failed.data = handles_;
  sender_.Start(fd_, queue_, WakeForFailure, handles_);
  // Packets that arrived before the bind ack are pending already: deliver them on the next turn.
  if (pending_.count > 0) SignalLocked();
  reader_ = std::thread([this] { ReaderLoop(); });
  NameThread(reader_, "read", queue_);

  napi_add_env_cleanup_hook(env, CleanupHook, this);
  cleanupHookAdded_ = true;
  closed_ = false;
  Ref();  // an open queue stays alive (like a listening server) until close()
}

Queue::~Queue() { Shutdown(ShutdownMode::FromFinalizer); }

namespace {

// A non-blocking NETLINK_NETFILTER socket with a receive buffer of rcvbuf bytes, bound to a port
// id the kernel picks; -1 with a JS error (code `code`) thrown.
int OpenNetfilterSocket(Napi::Env env, const char* code, uint32_t rcvbuf) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (fd < 0) {
    int e = errno;
    ThrowCodeError(env, code, e, std::string("netlink socket (NETLINK_NETFILTER): ") + std::strerror(e));
    return -1;
  }
  int size = static_cast<int>(rcvbuf);
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);  // capped by rmem_max
  }
  int one = 1;  // acks and errors echo only the request header, not the whole request
  setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
  sockaddr_nl local;
  std::memset(&local, 0, sizeof local);
  local.nl_family = AF_NETLINK;  // nl_pid 0: the kernel picks our port id
  if (bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local) < 0) {
    int e = errno;
    close(fd);
    ThrowCodeError(env, code, e, std::string("netlink bind: ") + std::strerror(e));
    return -1;
  }
  return fd;
}

sockaddr_nl KernelAddress() {
  sockaddr_nl kernel;
  std::memset(&kernel, 0, sizeof kernel);
  kernel.nl_family = AF_NETLINK;
  return kernel;
}

// Sends `len` bytes of `msg` to the kernel, retrying while the socket is busy; 0 or errno.
int SendToKernel(int fd, const uint8_t* msg, size_t len) {
  sockaddr_nl kernel = KernelAddress();
  return SendWithRetry(fd, msg, len, &kernel, sizeof kernel);
}

// Waits until fd is readable or NowMs() reaches `deadline`; false once it has.
bool WaitReadable(int fd, int64_t deadline) {
  int64_t left = deadline - NowMs();
  if (left <= 0) return false;
  pollfd pfd{fd, POLLIN, 0};
  poll(&pfd, 1, static_cast<int>(left));
  return true;
}

// Throws the error of a failed bind of `what` ("NFQUEUE 3", "NFLOG group 3"). EPERM is ambiguous:
// the kernel answers it both without CAP_NET_ADMIN and when another socket owns the queue or
// group; /proc (`proc`, listing `num` when bound) tells them apart.
void ThrowBindError(Napi::Env env, const char* busyCode, const char* failCode, const std::string& what,
                    const char* proc, uint16_t num, int err) {
  if ((err == EPERM && ProcListed(proc, num)) || err == EBUSY || err == EEXIST) {
    ThrowCodeError(env, busyCode, err, what + " is already bound by another process or socket");
  } else if (err == EPERM) {
    ThrowCodeError(env, "ERR_QUEUE_PERM", err, "binding " + what + " needs root or CAP_NET_ADMIN (EPERM)");
  } else {
    ThrowCodeError(env, failCode, err, "binding " + what + " failed: " + std::strerror(err));
  }
}

// Sends once, ignoring failure: an unbind on the way out (closing the socket unbinds anyway).
void SendOnce(int fd, const uint8_t* msg, size_t len) {
  sockaddr_nl kernel = KernelAddress();
  (void)sendto(fd, msg, len, 0, reinterpret_cast<const sockaddr*>(&kernel), sizeof kernel);
}

}  // namespace

bool Queue::OpenLog(Napi::Env env, uint16_t group, uint32_t rcvbuf) {
  logFd_ = OpenNetfilterSocket(env, "ERR_LOG_BIND", rcvbuf);
  if (logFd_ < 0) return false;
  logGroup_ = group;
  uint8_t msg[kConfigMsgMax];
  uint32_t seq = ++seq_;
  logRx_.resize(kRecvMax);
  synMemory_.Reserve(NowMs());  // before the reader thread starts: arming on the SYN needs it (RememberSyn)
  int err = SendToKernel(logFd_, msg, BuildLogBind(msg, group, kLogCopyRange, seq));
  if (err == 0) err = AwaitAck(logFd_, seq);
  if (err == 0) return true;
  close(logFd_);
  logFd_ = -1;
  pending_.Clear();
  ThrowBindError(env, "ERR_LOG_BUSY", "ERR_LOG_BIND", "NFLOG group " + std::to_string(group),
                 "/proc/net/netfilter/nfnetlink_log", group, err);
  return false;
}

// Waits (up to kAckTimeoutMs) for the kernel's answer to the config message `seq` sent on `fd`,
// the queue's socket or the log group's; 0 or errno. Packets that arrive first (the queue or group
// is live as soon as the kernel created it) are kept in the pending batch and delivered on the
// loop turn after open returns.
int Queue::AwaitAck(int fd, uint32_t seq) {
  waitSeq_ = seq;
  ackErr_ = -1;
  int64_t deadline = NowMs() + kAckTimeoutMs;
  while (ackErr_ < 0) {
    int err = ReadAvailable(true);
    if (err != 0) return err;
    if (ackErr_ < 0 && !WaitReadable(fd, deadline)) return ETIMEDOUT;
  }
  return ackErr_;
}

// Unbinds the log group and closes its socket, if open.
void Queue::CloseLog() {
  if (logFd_ < 0) return;
  uint8_t msg[kConfigMsgMax];
  SendOnce(logFd_, msg, BuildLogUnbind(msg, logGroup_, ++seq_));
  close(logFd_);
  logFd_ = -1;
}

bool Queue::OpenAndBind(Napi::Env env, const BindConfig& cfg, uint32_t rcvbuf) {
  fd_ = OpenNetfilterSocket(env, "ERR_QUEUE_BIND", rcvbuf);
  if (fd_ < 0) return false;

  wakeFd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wakeFd_ < 0) {
    int e = errno;
    close(fd_);
    fd_ = -1;
    ThrowCodeError(env, "ERR_QUEUE_BIND", e, std::string("eventfd: ") + std::strerror(e));
    return false;
  }
  rx_.resize(kRecvMax);

  uint8_t msg[kConfigMsgMax];
  uint32_t seq = ++seq_;
  int err = SendToKernel(fd_, msg, BuildBind(msg, cfg, seq));
  if (err == 0) err = AwaitAck(fd_, seq);
  if (err == 0) return true;

  close(fd_);
  fd_ = -1;
  close(wakeFd_);
  wakeFd_ = -1;
  pending_.Clear();
  early_.clear();
  ThrowBindError(env, "ERR_QUEUE_BUSY", "ERR_QUEUE_BIND", "NFQUEUE " + std::to_string(cfg.queue),
                 "/proc/net/netfilter/nfnetlink_queue", cfg.queue, err);
  return false;
}

Napi::Value Queue::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (ThrowIfClosed(env)) return env.Undefined();
  // Counters include the verdicts handed over before this call: wait (briefly) for the sender.
  sender_.WaitIdle(kSendRetryMs);
  VerdictSender::Counts sent = sender_.Snapshot();
  Napi::Object o = Napi::Object::New(env);
  auto put = [&](const char* k, uint64_t v) { o.Set(k, static_cast<double>(v)); };
  std::lock_guard<std::mutex> lock(rmu_);
  put("received", counters_.received);
  put("batches", counters_.batches);
  put("enobufs", counters_.enobufs);
  put("verdicts", sent.verdicts);
  put("verdictSends", sent.sends);
  put("sendErrors", counters_.sendErrors + sent.errors);
  put("recvErrors", counters_.recvErrors);
  put("kernelErrors", counters_.kernelErrors);
  put("handshakeAccepts", counters_.handshakeAccepts);
  put("batchesHandedOver", counters_.batchesHandedOver);
  put("afterHelloAllows", counters_.afterHelloAllows);
  put("helloAllows", counters_.helloAllows);
  put("tailAllows", counters_.tailAllows);
  put("synArms", counters_.synArms);
  put("synRepeats", counters_.synRepeats);
  put("synArmPauses", counters_.synArmPauses);
  put("helloNames", helloNames_.size());
  put("logged", counters_.logged);
  put("logIgnored", counters_.logIgnored);
  put("helloAnswerMarks", counters_.helloAnswerMarks);
  put("answered", counters_.answered);
  put("logEnobufs", counters_.logEnobufs);
  put("logBehind", counters_.logBehind);
  return o;
}

Napi::Value Queue::Close(const Napi::CallbackInfo& info) {
  Shutdown(ShutdownMode::FromJs);
  return info.Env().Undefined();
}

Napi::Value Queue::GetClosed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), closed_);
}

bool Queue::ThrowIfClosed(Napi::Env env) {
  if (!closed_) return false;
  ThrowCodeError(env, "ERR_QUEUE_CLOSED", 0,
                 "NFQUEUE " + std::to_string(queue_) + " is closed");
  return true;
}

void Queue::Shutdown(ShutdownMode mode) {
  if (closed_) {
    if (fd_ >= 0) {  // a failed bind leaves nothing open, but be safe
      close(fd_);
      fd_ = -1;
    }
    return;
  }
  closed_ = true;
  // Verdicts already handed over go out before the unbind (the kernel drops what is still
  // queued when the queue goes away); the thread ends before the handles it wakes close.
  StopReader();
  sender_.Stop();
  if (handles_ != nullptr) {
    // Both threads have ended, so nothing wakes these handles any more.
    handles_->owner = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&handles_->ready), OnHandleClosed);
    uv_close(reinterpret_cast<uv_handle_t*>(&handles_->failed), OnHandleClosed);
    handles_ = nullptr;
  }
  if (fd_ >= 0) {
    uint8_t msg[kConfigMsgMax];
    SendOnce(fd_, msg, BuildUnbind(msg, queue_, ++seq_));
    close(fd_);
    fd_ = -1;
  }
  CloseLog();
  if (wakeFd_ >= 0) close(wakeFd_);
  wakeFd_ = -1;
  if (raw4_ >= 0) close(raw4_);
  if (raw6_ >= 0) close(raw6_);
  raw4_ = raw6_ = -1;
  std::vector<uint8_t>().swap(rx_);
  std::vector<uint8_t>().swap(logRx_);
  std::vector<uint8_t>().swap(earlyMsgs_);
  std::vector<uint8_t>().swap(send_);
  pending_ = Batch();
  delivering_ = Batch();

  if (mode == ShutdownMode::FromCleanupHook) return;  // the env is going away
  if (cleanupHookAdded_) {
    napi_remove_env_cleanup_hook(env_, CleanupHook, this);
    cleanupHookAdded_ = false;
  }
  if (mode == ShutdownMode::FromFinalizer) return;
  Unref();  // balances the Ref() taken when the queue opened
  if (inCallback_ > 0) {
    refsPending_ = true;  // the callbacks and async context are in use right now
  } else {
    ReleaseJsRefs();
  }
}

void Queue::ReleaseJsRefs() {
  refsPending_ = false;
  onBatch_.Reset();
  onError_.Reset();
  asyncContext_.reset();
}

void Queue::CleanupHook(void* arg) {
  auto* self = static_cast<Queue*>(arg);
  self->cleanupHookAdded_ = false;
  self->Shutdown(ShutdownMode::FromCleanupHook);
}

}  // namespace fg
