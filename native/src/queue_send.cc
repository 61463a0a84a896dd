// The Queue class, sending part: verdicts (built here, sent in batches by the sender thread)
// and raw IPv4/IPv6 injection. See native/README.md ("Verdicts", "sendRaw").
#include <arpa/inet.h>
#include <linux/netfilter.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "errors.h"
#include "queue.h"
#include "queue_internal.h"

namespace fg {

Napi::Value Queue::Verdicts(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (ThrowIfClosed(env)) return env.Undefined();
  if (info.Length() < 2 || !info[0].IsTypedArray() ||
      info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array ||
      !info[1].IsNumber()) {
    ThrowCodeError(env, "ERR_ARG", 0, "verdicts(quads: Uint32Array, count: number)");
    return env.Undefined();
  }
  Napi::Uint32Array quads = info[0].As<Napi::Uint32Array>();
  double countD = info[1].As<Napi::Number>().DoubleValue();
  if (!(countD >= 0 && countD <= static_cast<double>(quads.ElementLength() / 4)) ||
      countD != static_cast<double>(static_cast<uint64_t>(countD))) {
    ThrowCodeError(env, "ERR_ARG", 0, "verdicts: count must fit the array (4 uint32 each)");
    return env.Undefined();
  }
  size_t count = static_cast<size_t>(countD);
  const uint32_t* q = quads.Data();
  for (size_t i = 0; i < count; i++) {  // validate everything before sending anything
    uint32_t v = q[4 * i + 1];
    if (v != NF_DROP && v != NF_ACCEPT && v != NF_REPEAT) {
      ThrowCodeError(env, "ERR_ARG", 0,
                     "verdict " + std::to_string(v) + " for packet " + std::to_string(q[4 * i]) +
                         " is not NF_DROP (0), NF_ACCEPT (1) or NF_REPEAT (4)");
      return env.Undefined();
    }
  }

  // Built here, sent by the sender thread (sender.h): the kernel's work for each verdict
  // (reinjecting and forwarding the packet) then runs beside JavaScript instead of inside it.
  if (send_.size() < count * kVerdictMsgMax) send_.resize(count * kVerdictMsgMax);
  size_t off = 0;
  for (size_t i = 0; i < count; i++) {
    off += BuildVerdict(send_.data() + off, queue_, q[4 * i], q[4 * i + 1], q[4 * i + 2] != 0,
                        q[4 * i + 3]);
  }
  sender_.Push(send_.data(), off, count);
  return env.Undefined();
}

void Queue::OnSendFailure() {
  uint64_t failed = 0;
  int err = 0;
  if (closed_ || !sender_.TakeFailure(&failed, &err)) return;
  Napi::Env env(env_);
  Napi::HandleScope scope(env);
  DeliverError("ERR_QUEUE_SEND", err,
               "sending " + std::to_string(failed) + " verdicts to NFQUEUE " +
                   std::to_string(queue_) + " failed: " + std::strerror(err));
}

Napi::Value Queue::SendRaw(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (ThrowIfClosed(env)) return env.Undefined();
  bool isBytes = info.Length() >= 1 && info[0].IsTypedArray() &&
                 info[0].As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array;
  bool hasMark = info.Length() >= 2 && !info[1].IsUndefined() && !info[1].IsNull();
  if (!isBytes || (hasMark && !info[1].IsNumber())) {
    ThrowCodeError(env, "ERR_ARG", 0, "sendRaw(packet: Uint8Array, mark?: number)");
    return env.Undefined();
  }
  uint32_t mark = 0;
  if (hasMark && !ReadUint32(info[1], &mark)) {
    ThrowCodeError(env, "ERR_ARG", 0, "sendRaw: mark must be a uint32");
    return env.Undefined();
  }
  Napi::Uint8Array pkt = info[0].As<Napi::Uint8Array>();
  const uint8_t* p = pkt.Data();
  size_t len = pkt.ElementLength();
  int version = len > 0 ? p[0] >> 4 : 0;
  sockaddr_storage dst;
  std::memset(&dst, 0, sizeof dst);
  socklen_t dstLen;
  int* fd;
  uint32_t* curMark;
  if (version == 4 && len >= 20) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&dst);
    sin->sin_family = AF_INET;
    std::memcpy(&sin->sin_addr, p + 16, 4);  // IPv4 destination address
    dstLen = sizeof *sin;
    fd = &raw4_;
    curMark = &raw4Mark_;
  } else if (version == 6 && len >= 40) {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&dst);
    sin6->sin6_family = AF_INET6;
    std::memcpy(&sin6->sin6_addr, p + 24, 16);  // IPv6 destination address
    dstLen = sizeof *sin6;
    fd = &raw6_;
    curMark = &raw6Mark_;
  } else {
    ThrowCodeError(env, "ERR_ARG", 0, "sendRaw: not a complete IPv4 or IPv6 header");
    return env.Undefined();
  }
  if (*fd < 0) {
    // IPPROTO_RAW implies IP_HDRINCL (IPv4) and header-included sends (IPv6).
    *fd = socket(version == 4 ? AF_INET : AF_INET6, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC,
                 IPPROTO_RAW);
    if (*fd < 0) {
      int e = errno;
      counters_.sendErrors++;
      ThrowCodeError(env, "ERR_QUEUE_SEND", e, std::string("raw socket: ") + std::strerror(e));
      return env.Undefined();
    }
  }
  if (mark != *curMark) {
    if (setsockopt(*fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark) < 0) {
      int e = errno;
      counters_.sendErrors++;
      ThrowCodeError(env, "ERR_QUEUE_SEND", e, std::string("SO_MARK: ") + std::strerror(e));
      return env.Undefined();
    }
    *curMark = mark;
  }
  int err = SendWithRetry(*fd, p, len, &dst, dstLen);
  if (err != 0) {
    counters_.sendErrors++;
    ThrowCodeError(env, "ERR_QUEUE_SEND", err,
                   std::string("sending a raw packet: ") + std::strerror(err));
  }
  return env.Undefined();
}

}  // namespace fg
