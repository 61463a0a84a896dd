// The verdict sender thread; see sender.h.
#include "sender.h"

#include <linux/netlink.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <chrono>
#include <cstring>

#include "queue_internal.h"

namespace fg {

int SendWithRetry(int fd, const void* buf, size_t len, const void* addr, unsigned addrLen) {
  int64_t deadline = 0;
  for (;;) {
    ssize_t n = sendto(fd, buf, len, 0, static_cast<const sockaddr*>(addr), addrLen);
    if (n >= 0) return 0;
    int e = errno;
    if (e == EINTR) continue;
    if (e != EAGAIN && e != EWOULDBLOCK && e != ENOBUFS) return e;
    int64_t now = NowMs();
    if (deadline == 0) deadline = now + kSendRetryMs;
    if (now >= deadline) return e;
    if (e == ENOBUFS) {
      usleep(1000);  // memory pressure: writability says nothing, just back off
    } else {
      pollfd pfd{fd, POLLOUT, 0};
      poll(&pfd, 1, 10);
    }
  }
}

void NameThread(std::thread& t, const char* role, uint16_t queue) {
  char name[16];
  snprintf(name, sizeof name, "fg-q%u-%s", static_cast<unsigned>(queue), role);
  pthread_setname_np(t.native_handle(), name);
}

void VerdictSender::Start(int fd, uint16_t queue, void (*onFailure)(void*), void* arg) {
  fd_ = fd;
  onFailure_ = onFailure;
  arg_ = arg;
  stop_ = false;
  thread_ = std::thread([this] { Run(); });
  NameThread(thread_, "send", queue);
}

void VerdictSender::Push(const uint8_t* msgs, size_t bytes, size_t count) {
  if (count == 0) return;
  std::unique_lock<std::mutex> lock(mu_);
  if (!busy_ && pending_.empty()) {
    // Nothing of the caller's is still on its way, so sending now keeps the order, and saves
    // waking the thread: on a quiet gateway that wake-up was most of a verdict's delay. Under
    // load the thread is busy and the work goes to it, off the caller's thread.
    inline_++;
    lock.unlock();
    SendAll(msgs, bytes);
    lock.lock();
    if (--inline_ == 0 && pending_.empty() && !busy_) idle_.notify_all();
    return;
  }
  pending_.insert(pending_.end(), msgs, msgs + bytes);
  lock.unlock();
  wake_.notify_one();
}

void VerdictSender::WaitIdle(int timeoutMs) {
  std::unique_lock<std::mutex> lock(mu_);
  idle_.wait_for(lock, std::chrono::milliseconds(timeoutMs),
                 [this] { return pending_.empty() && !busy_ && inline_ == 0; });
}

void VerdictSender::Stop() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_one();
  thread_.join();  // the thread sends what is pending before it returns
}

VerdictSender::Counts VerdictSender::Snapshot() {
  std::lock_guard<std::mutex> lock(mu_);
  return counts_;
}

bool VerdictSender::TakeFailure(uint64_t* failed, int* err) {
  std::lock_guard<std::mutex> lock(mu_);
  if (failed_ == 0) return false;
  *failed = failed_;
  *err = lastErr_;
  failed_ = 0;
  return true;
}

void VerdictSender::Run() {
  std::vector<uint8_t> batch;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    wake_.wait(lock, [this] { return stop_ || !pending_.empty(); });
    if (pending_.empty()) break;  // stop_, and nothing left to send
    batch.clear();
    batch.swap(pending_);
    busy_ = true;
    lock.unlock();
    SendAll(batch.data(), batch.size());
    lock.lock();
    busy_ = false;
    if (pending_.empty() && inline_ == 0) idle_.notify_all();
  }
  idle_.notify_all();
}

// Splits the messages into datagrams of at most kSendChunk bytes at message boundaries and sends
// them; runs without the lock. Each message starts with its nlmsghdr (host order).
void VerdictSender::SendAll(const uint8_t* msgs, size_t bytes) {
  sockaddr_nl kernel;
  std::memset(&kernel, 0, sizeof kernel);
  kernel.nl_family = AF_NETLINK;
  size_t start = 0;
  while (start < bytes) {
    size_t end = start;
    uint64_t inChunk = 0;
    while (end < bytes) {
      nlmsghdr h;
      std::memcpy(&h, msgs + end, sizeof h);
      size_t step = NLMSG_ALIGN(h.nlmsg_len);
      if (end - start + step > kSendChunk && end > start) break;
      end += step;
      inChunk++;
    }
    int err = SendWithRetry(fd_, msgs + start, end - start, &kernel, sizeof kernel);
    bool failed;
    {
      std::lock_guard<std::mutex> lock(mu_);
      failed = err != 0;
      if (failed) {
        counts_.errors++;
        failed_ += inChunk;
        lastErr_ = err;
      } else {
        counts_.verdicts += inChunk;
        counts_.sends++;
      }
    }
    if (failed && onFailure_ != nullptr) onFailure_(arg_);
    start = end;
  }
}

}  // namespace fg
