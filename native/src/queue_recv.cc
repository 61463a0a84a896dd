// The Queue class, receiving part: drain the socket into one compact batch, hand it to JS
// once, and keep reading through ENOBUFS. See native/README.md ("Receive", "Overflow").
#include <linux/netlink.h>
#include <sys/socket.h>

#include <netinet/in.h>  // before linux/netfilter.h, which would otherwise redefine its types
#include <linux/netfilter.h>

#include <cerrno>
#include <cstring>

#include "errors.h"
#include "queue.h"
#include "queue_internal.h"

namespace fg {

// Receives datagrams until EAGAIN or the batch is full. Returns 0, or the errno of a recv()
// failure other than EAGAIN/EINTR/ENOBUFS (ENOBUFS is counted and skipped).
int Queue::Drain(bool ignoreLimit) {
  while (ignoreLimit || (count_ < batchMax_ && used_ < kBatchMaxBytes)) {
    if (data_.size() < used_ + kRecvMax) data_.resize(used_ + 2 * kRecvMax);
    ssize_t n = recv(fd_, data_.data() + used_, kRecvMax, MSG_TRUNC);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      if (errno == ENOBUFS) {
        counters_.enobufs++;
        continue;
      }
      counters_.recvErrors++;
      return errno;
    }
    if (n == 0) return 0;
    size_t len = static_cast<size_t>(n);
    if (len > kRecvMax) {  // MSG_TRUNC: the datagram was longer than our buffer
      counters_.recvErrors++;
      len = kRecvMax;
    }
    ProcessDatagram(used_, len);
  }
  return 0;
}

// Walks the messages of the datagram at data_[start, start+len). Payloads are moved down to
// data_[used_...] so the batch stays compact; each move goes to a lower or equal address and
// never overwrites a message not yet decoded.
void Queue::ProcessDatagram(size_t start, size_t len) {
  uint8_t* base = data_.data() + start;
  size_t off = 0;
  size_t msgLen;
  while ((msgLen = MessageAt(base, len, off)) != 0) {
    PacketInfo pkt;
    MsgResult r = DecodeMessage(base + off, msgLen, &pkt);
    switch (r.kind) {
      case MsgKind::Packet: {
        uint32_t flags = (pkt.skbInfo & 0x7f) | (static_cast<uint32_t>(pkt.hook) << 8) |
                         (static_cast<uint32_t>(pkt.hwProtocol) << 16);
        if (acceptHandshake_ && IsBareHandshake(pkt.payload, pkt.payloadLen)) {
          flags |= kFlagAccepted;
          handshakes_.push_back(count_);
        }
        uint32_t m[kMetaStride] = {pkt.id,  pkt.mark, pkt.inDev, pkt.outDev, flags,
                                   static_cast<uint32_t>(used_), pkt.payloadLen, pkt.capLen};
        meta_.insert(meta_.end(), m, m + kMetaStride);
        if (pkt.payloadLen > 0) std::memmove(data_.data() + used_, pkt.payload, pkt.payloadLen);
        used_ += pkt.payloadLen;
        count_++;
        counters_.received++;
        break;
      }
      case MsgKind::Ack:
        if (r.seq == waitSeq_ && ackErr_ < 0) ackErr_ = 0;
        break;
      case MsgKind::Error:
        if (r.seq == waitSeq_ && ackErr_ < 0) {
          ackErr_ = r.err;
        } else {
          counters_.kernelErrors++;
        }
        break;
      case MsgKind::Bad:
        counters_.recvErrors++;
        break;
      case MsgKind::Other:  // NLMSG_NOOP, NLMSG_DONE, NLMSG_OVERRUN: nothing to do
        break;
    }
    off += NLMSG_ALIGN(msgLen);
  }
}

void Queue::OnReadable() {
  if (closed_) return;
  Napi::Env env(env_);
  Napi::HandleScope scope(env);
  int err = Drain(false);
  if (!handshakes_.empty()) AcceptHandshakes();
  if (count_ > 0) DeliverBatch();
  if (err != 0 && !closed_) {
    DeliverError("ERR_QUEUE_RECV", err,
                 std::string("receiving from NFQUEUE ") + std::to_string(queue_) + ": " +
                     std::strerror(err));
  }
}

// libuv turns POLLERR into status UV_EBADF and stops the handle. On a netlink socket POLLERR
// means sk_err is set, and for us that is ENOBUFS (the kernel dropped messages because the
// receive buffer was full): read and clear it, count it, restart polling and go on reading.
void Queue::OnPollError(int uvStatus) {
  if (closed_) return;
  int sockErr = 0;
  socklen_t len = sizeof sockErr;
  if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &sockErr, &len) < 0) {
    Napi::Env env(env_);
    Napi::HandleScope scope(env);
    counters_.recvErrors++;
    DeliverError("ERR_QUEUE_RECV", errno,
                 std::string("polling NFQUEUE ") + std::to_string(queue_) +
                     " failed, no more packets will be read: " + uv_strerror(uvStatus));
    return;
  }
  uv_poll_start(&handles_->poll, UV_READABLE, OnPollEvent);
  if (sockErr == ENOBUFS) {
    counters_.enobufs++;
  } else if (sockErr != 0) {
    Napi::Env env(env_);
    Napi::HandleScope scope(env);
    counters_.recvErrors++;
    DeliverError("ERR_QUEUE_RECV", sockErr,
                 std::string("NFQUEUE ") + std::to_string(queue_) + " socket error: " +
                     std::strerror(sockErr));
    if (closed_) return;
  }
  OnReadable();
}

// Accepts the batch's bare SYN/SYN-ACKs before JS runs: they carry nothing to inspect, and a
// connection's handshake should not wait for the JavaScript engine (native/README.md,
// "Handshakes"). The accepts go to the sender thread first, ahead of any verdict JS gives.
void Queue::AcceptHandshakes() {
  size_t n = handshakes_.size();
  if (send_.size() < n * kVerdictMsgMax) send_.resize(n * kVerdictMsgMax);
  size_t off = 0;
  for (uint32_t index : handshakes_) {
    off += BuildVerdict(send_.data() + off, queue_, meta_[index * kMetaStride], NF_ACCEPT, false, 0);
  }
  sender_.Push(send_.data(), off, n);
  counters_.handshakeAccepts += n;
  handshakes_.clear();
}

void Queue::DeliverBatch() {
  Napi::Env env(env_);
  uint32_t count = count_;
  Napi::Buffer<uint8_t> data = Napi::Buffer<uint8_t>::Copy(env, data_.data(), used_);
  size_t metaBytes = meta_.size() * sizeof(uint32_t);
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, metaBytes);
  std::memcpy(ab.Data(), meta_.data(), metaBytes);
  Napi::Uint32Array meta = Napi::Uint32Array::New(env, meta_.size(), ab, 0);
  count_ = 0;
  used_ = 0;
  meta_.clear();
  counters_.batches++;

  inCallback_++;
  Ref();  // keep this object alive even if the callback drops the last JS reference
  onBatch_.MakeCallback(Value(), {data, meta, Napi::Number::New(env, count)}, *asyncContext_);
  if (env.IsExceptionPending()) {
    Napi::Error e = env.GetAndClearPendingException();
    CallOnError(e.Value());
  }
  Unref();
  inCallback_--;
  if (inCallback_ == 0 && refsPending_) ReleaseJsRefs();
}

void Queue::DeliverError(const char* code, int err, const std::string& message) {
  Napi::Env env(env_);
  CallOnError(MakeCodeError(env, code, err, message).Value());
}

void Queue::CallOnError(napi_value error) {
  Napi::Env env(env_);
  if (onError_.IsEmpty()) return;  // no handler: the counters still tell
  inCallback_++;
  onError_.MakeCallback(Value(), {error}, *asyncContext_);
  if (env.IsExceptionPending()) {
    // The error handler itself threw: that is an uncaught exception, as for any callback.
    Napi::Error e = env.GetAndClearPendingException();
    napi_fatal_exception(env, e.Value());
  }
  inCallback_--;
  if (inCallback_ == 0 && refsPending_) ReleaseJsRefs();
}

}  // namespace fg
