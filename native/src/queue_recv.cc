// The Queue class, receiving part: a reader thread reads the socket, accepts bare handshakes at
// once, and appends packets to the pending batch; the loop thread takes that batch and hands it
// to JS in one call. See native/README.md ("Receive", "Handshakes", "Overflow").
#include <linux/netlink.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <netinet/in.h>  // before linux/netfilter.h, which would otherwise redefine its types
#include <linux/netfilter.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "errors.h"
#include "hello.h"
#include "queue.h"
#include "queue_internal.h"

namespace fg {

namespace {

bool Full(const Batch& b, uint32_t batchMax) {
  return b.count >= batchMax || b.data.size() >= kBatchMaxBytes;
}

// Whether an armed-connection table takes one more entry; sweeps out entries older than
// `expiryMs` once it is large (a client that vanished leaves its entry behind), at most once
// every kSweepEveryMs (`sweptMs`: the last time), so a flood of entries that are all young does
// not make every insertion walk the table.
template <class Table>
bool RoomIn(Table* table, int64_t* sweptMs, int64_t expiryMs = kAfterHelloExpiryMs) {
  int64_t now = NowMs();
  if (table->size() >= kAfterHelloSweepAt && now - *sweptMs >= kSweepEveryMs) {
    *sweptMs = now;
    int64_t old = now - expiryMs;
    for (auto it = table->begin(); it != table->end();) {
      if (it->second.since < old) it = table->erase(it);
      else ++it;
    }
  }
  return table->size() < kMaxAfterHello;
}

// A TCP port, big-endian at p.
uint16_t PortAt(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }

constexpr uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kAck = 0x10, kUrg = 0x20;
constexpr uint8_t kControl = kFin | kSyn | kRst | kAck | kUrg;

// A server's bare SYN-ACK answering the SYN an expectHello entry was armed on.
bool AnswersSyn(const TcpView& v, const HelloExpectation& e) {
  return v.srcLow != e.clientLow && (v.flags & kControl) == (kSyn | kAck) && v.ack == e.seq && v.payloadLen == 0;
}

// An expectHello entry for a hello at `seq` from the `arm` words (kHelloArmWords: mark, allowMark,
// mask, maxHelloBytes, strict, serverKnown, serverNext), as expectHello and armHellosOnSyn get them.
HelloExpectation HelloFromArm(const uint32_t* w, uint32_t seq, bool clientLow, const FakeChecks& checks, int64_t since) {
  return HelloExpectation{seq, w[0], w[1], w[2] | w[7], w[7], clientLow, w[4] != 0, w[5] != 0, w[6], w[3], checks, since};
}

// The meta flags of a copy read from the log group: logged, taking no verdict, its checksum not
// known to be computed (NFLOG does not say), its hook and hardware protocol.
uint32_t LoggedFlags(const PacketInfo& pkt) {
  return kFlagLogged | kFlagAccepted | kSkbCsumNotReady | (static_cast<uint32_t>(pkt.hook) << 8) |
         (static_cast<uint32_t>(pkt.hwProtocol) << 16);
}

// An arm's marks: mark and allowMark within the mask, answerMark outside it.
bool ArmMarksOk(const uint32_t* w) { return (w[0] & ~w[2]) == 0 && (w[1] & ~w[2]) == 0 && (w[7] & w[2]) == 0; }

// The reader's own verdict giving a packet the mark value `value` (within `mask`), as the
// engine's repeat(): a packet already carrying it came back through a rule without the mark
// guard, and is accepted rather than repeated forever.
EarlyVerdict MarkVerdict(const PacketInfo& pkt, uint32_t value, uint32_t mask) {
  if ((pkt.mark & mask) == value) return {pkt.id, NF_ACCEPT, false, 0};
  return {pkt.id, NF_REPEAT, true, (pkt.mark & ~mask) | value};
}

// Makes a name the key of an allowed name: the name, a zero byte, the server port big-endian.
void AppendPort(uint16_t port, std::string* key) {
  key->push_back('\0');
  key->push_back(static_cast<char>(port >> 8));
  key->push_back(static_cast<char>(port & 0xff));
}

}  // namespace

// Receives datagrams until EAGAIN, or until the pending batch is full (unless ignoreLimit, as
// while waiting for the bind ack). Returns 0, or the errno of a recv() failure other than
// EAGAIN/EINTR/ENOBUFS (ENOBUFS is counted and skipped). Packets the reader gave their verdict
// itself need JavaScript only for its bookkeeping: the wake-up for them waits until here, the
// socket drained, so that the SYN-ACK a SYN's verdict brings back is read and sent on before
// JavaScript takes the CPU.
int Queue::ReadAvailable(bool ignoreLimit) {
  if (!ignoreLimit) {
    std::lock_guard<std::mutex> lock(rmu_);
    if (Full(pending_, batchMax_)) return 0;
  }
  // The log group's copies first, also when only its socket was ready; the queue is read even if
  // reading the log failed (reported after).
  int logErr = logFd_ >= 0 ? ReadUntilDrained(logFd_, logRx_, true) : 0;
  int err = fd_ >= 0 ? ReadUntilDrained(fd_, rx_, ignoreLimit) : 0;  // none yet while the log binds
  if (err == 0) err = logErr;
  std::lock_guard<std::mutex> lock(rmu_);
  if (wakeDeferred_ || Full(pending_, batchMax_)) {
    wakeDeferred_ = false;
    if (handles_ != nullptr) SignalLocked();
  }
  return err;
}

// ReadAvailable's loop, for the queue's socket or the log group's (`fd`, read into `buf`). The
// log group (logGroup) is read whatever the batch holds (up to kLogBacklog batches), and again after
// each datagram of the queue is received and before it is walked: the kernel copies a handshake
// packet to the group before the packet goes on, so every copy of a packet that came before a
// queued one is in the log socket by the time that queued one is read, and JavaScript meets a
// connection's SYN and SYN-ACK before its data. A failure to read the log is reported once the
// queue datagram in hand has been walked, so no queued packet is left behind for it.
int Queue::ReadUntilDrained(int fd, std::vector<uint8_t>& buf, bool ignoreLimit) {
  bool log = fd == logFd_;
  int logErr = 0;
  for (;;) {
    if (log) {
      std::lock_guard<std::mutex> lock(rmu_);
      if (pending_.count >= kLogBacklog * batchMax_) {
        // Copies come faster than JavaScript takes batches (a SYN flood): leave the rest in the
        // socket (it may overflow: logEnobufs) rather than stop reading the queue.
        counters_.logBehind++;
        // A SYN left unread could reuse an allowed tail's ports. (The memory of SYNs and the arms
        // read the copies later, in order, as the engine does.)
        tail_.clear();
        return 0;
      }
    }
    ssize_t n = recv(fd, buf.data(), kRecvMax, MSG_TRUNC);
    if (n < 0) {
      int e = errno;  // before the lock, which may touch errno
      if (e == EINTR) continue;
      if (e == EAGAIN || e == EWOULDBLOCK) return logErr;
      std::lock_guard<std::mutex> lock(rmu_);
      if (e == ENOBUFS) {
        (log ? counters_.logEnobufs : counters_.enobufs)++;
        ForgetAllArmedLocked();  // a lost packet could be a SYN the memory of SYNs misses, or one of an armed connection's
        continue;
      }
      counters_.recvErrors++;
      if (log) logFailed_ = true;
      return e;
    }
    if (n == 0) return logErr;
    size_t len = static_cast<size_t>(n);
    if (len > kRecvMax) {  // MSG_TRUNC: the datagram was longer than our buffer
      std::lock_guard<std::mutex> lock(rmu_);
      counters_.recvErrors++;
      len = kRecvMax;
    }
    if (log) {
      ProcessLogDatagram(buf.data(), len);
      continue;
    }
    if (logFd_ >= 0 && logErr == 0) logErr = ReadUntilDrained(logFd_, logRx_, true);
    bool full = ProcessDatagram(buf.data(), len);
    if (full && !ignoreLimit) return logErr;
  }
}

// Walks the messages of the datagram in base[0, len) and appends its packets to the pending batch;
// answers whether the batch is now full.
bool Queue::ProcessDatagram(uint8_t* base, size_t len) {
  size_t off = 0;
  size_t msgLen;
  bool added = false;     // a packet was added to the batch
  bool needsJs = false;   // one that waits for JavaScript's verdict
  bool prompt = false;    // one whose reading JavaScript needs soon (a handshake: arms follow it)
  std::unique_lock<std::mutex> lock(rmu_);
  while ((msgLen = MessageAt(base, len, off)) != 0) {
    PacketInfo pkt;
    MsgResult r = DecodeMessage(base + off, msgLen, &pkt);
    switch (r.kind) {
      case MsgKind::Packet: {
        uint32_t flags = (pkt.skbInfo & kSkbInfoBits) | (static_cast<uint32_t>(pkt.hook) << 8) |
                         (static_cast<uint32_t>(pkt.hwProtocol) << 16);
        // The armed tables first: a packet of an armed connection disarms it (but the SYN-ACK an
        // expectHello waits for), a SYN too; and, with a log group, the memory of SYNs.
        uint32_t given = AnyArmedLocked() || logFd_ >= 0 ? CheckArmed(pkt) : 0;
        if (given != 0) {
          flags |= given;
        } else if (acceptHandshake_ && IsBareHandshake(pkt.payload, pkt.payloadLen)) {
          flags |= kFlagAccepted;
          prompt = true;
          early_.push_back({pkt.id, NF_ACCEPT, false, 0});
          counters_.handshakeAccepts++;
        } else {
          needsJs = true;
        }
        AppendPendingLocked(pkt, flags);
        counters_.received++;
        added = true;
        break;
      }
      case MsgKind::Logged:  // only the log group's socket carries these
        break;
      default:
        NoteReplyLocked(r);
        break;
    }
    off += NLMSG_ALIGN(msgLen);
  }
  if (!early_.empty()) {
    // Sent before the loop is woken, so these packets go on while JavaScript starts up.
    lock.unlock();
    SendEarlyVerdicts();
    lock.lock();
  }
  if (needsJs && handles_ != nullptr) {
    SignalLocked();
  } else if (prompt) {
    wakeDeferred_ = true;
  } else if (added && lazySince_ == 0) {
    lazySince_ = NowMs();  // only packets the reader allowed: see ReaderLoop
  }
  return Full(pending_, batchMax_);
}

// What a message of either socket that is no packet means: the ack (or error) a bind waits for
// (waitSeq_), the kernel refusing a verdict, a malformed message, or nothing (NLMSG_NOOP,
// NLMSG_DONE, NLMSG_OVERRUN). rmu_ held.
void Queue::NoteReplyLocked(const MsgResult& r) {
  if (r.kind == MsgKind::Ack || r.kind == MsgKind::Error) {
    if (r.seq == waitSeq_ && ackErr_ < 0) ackErr_ = r.err;
    else if (r.kind == MsgKind::Error) counters_.kernelErrors++;
  } else if (r.kind == MsgKind::Bad) {
    counters_.recvErrors++;
  }
}

// Appends a packet read from either socket to the pending batch with its meta flags; rmu_ held.
void Queue::AppendPendingLocked(const PacketInfo& pkt, uint32_t flags) {
  Batch& b = pending_;
  uint32_t m[kMetaStride] = {pkt.id,  pkt.mark, pkt.inDev, pkt.outDev, flags,
                             static_cast<uint32_t>(b.data.size()), pkt.payloadLen,
                             pkt.capLen};
  b.meta.insert(b.meta.end(), m, m + kMetaStride);
  b.data.insert(b.data.end(), pkt.payload, pkt.payload + pkt.payloadLen);
  b.count++;
}

// Walks a datagram of the log group's socket (logGroup) in base[0, len): each bare SYN/SYN-ACK
// flowgate's rules logged (and accepted: it takes no verdict) joins the pending batch for the
// engine, flagged as accepted and logged, and is read for the armed tables like a queued one (the
// SYN-ACK an expectHello waits for). Its checksum counts as not computed: NFLOG does not say (the
// engine does not check a bare handshake's checksum; conntrack does, in PREROUTING). Anything else
// sent to the group is counted and dropped.
void Queue::ProcessLogDatagram(uint8_t* base, size_t len) {
  size_t off = 0;
  size_t msgLen;
  bool added = false;
  bool prompt = false;  // a copy JavaScript should read soon: it arms the connection on its SYN
  std::unique_lock<std::mutex> lock(rmu_);
  while ((msgLen = MessageAt(base, len, off)) != 0) {
    PacketInfo pkt;
    MsgResult r = DecodeMessage(base + off, msgLen, &pkt);
    off += NLMSG_ALIGN(msgLen);
    if (r.kind != MsgKind::Logged) {
      NoteReplyLocked(r);
      continue;
    }
    if (HasLogPrefix(pkt, kAnswerPrefix)) {
      AppendAnswerLocked(&pkt);
      added = true;
      continue;
    }
    // Only flowgate's rules' copies, whole: another rule logging to the group (a plain `-j NFLOG`
    // logs to group 0), maybe at another hook or cut short, must not feed the engine.
    bool ours = HasLogPrefix(pkt, kLogPrefix);
    if (!ours || !IsBareHandshake(pkt.payload, pkt.payloadLen) || !ReadTcp(pkt.payload, pkt.payloadLen, &tcp_)) {
      // One of flowgate's copies the reader cannot read could be a SYN it should remember.
      if (ours) PauseSynArmingLocked();
      counters_.logIgnored++;
      continue;
    }
    if (AnyArmedLocked()) CheckReadArmed(pkt);  // never gives a bare handshake a verdict
    bool armed = RememberSyn() && ArmOnSyn();
    // JavaScript arms the connection itself unless the reader did; a SYN-ACK it needs soon only
    // when arming on the SYN is off.
    if (!autoArmOn_ || (!armed && (tcp_.flags & kAck) == 0)) prompt = true;
    AppendPendingLocked(pkt, LoggedFlags(pkt) | (armed ? kFlagSynArmed : 0));
    counters_.logged++;
    added = true;
  }
  // Like a handshake the reader accepted: JavaScript arms the connection on its SYN, so it should
  // see it soon, once both sockets are drained (ReadAvailable), or now if the batch is full. Not
  // when the reader armed it itself (armHellosOnSyn) and JavaScript was woken within kLazyWakeMs
  // (a busy gateway): then JavaScript only keeps its books with these copies, and reads them with
  // the next wake-up or after kLazyWakeMs, as the packets the reader allowed. On a quiet gateway
  // the copy still wakes it: reading the handshake then, rather than together with the request
  // that needs its verdict (plain HTTP), kept 0.1-0.3 ms off that request's time to first byte.
  if (added && !prompt && NowMs() - lastSignalMs_ >= kLazyWakeMs) prompt = true;
  if (prompt) wakeDeferred_ = true;
  else if (added && lazySince_ == 0) lazySince_ = NowMs();
  if (added && handles_ != nullptr && Full(pending_, batchMax_)) SignalLocked();
}

// A copy with kAnswerPrefix (logGroup): the rules ended the inspection of a hello let on with the
// answer mark on the server's ServerHello, and copied that packet. Cut to its headers (the copy is
// 256 bytes at most: only the connection and the sequence numbers matter), it joins the batch
// flagged kFlagAnswered for the engine, which ends the flow's inspection if it holds and waits
// for nothing else. The client's next flight no longer comes through the queue, so the armed
// tables drop the connection (any packet of an armed connection disarms it). A copy the reader
// cannot read is counted in logIgnored. rmu_ held; the copy is rewritten in the datagram.
void Queue::AppendAnswerLocked(PacketInfo* pkt) {
  uint8_t* ip = pkt->payload;
  size_t len = pkt->payloadLen;
  if (!CutToHeaders(ip, &len) || !ReadTcp(ip, len, &tcp_)) {
    counters_.logIgnored++;
    return;
  }
  pkt->payloadLen = static_cast<uint32_t>(len);
  pkt->capLen = static_cast<uint32_t>(len);
  if (AnyArmedLocked()) CheckReadArmed(*pkt);  // a server packet: never given a verdict here
  AppendPendingLocked(*pkt, LoggedFlags(*pkt) | kFlagAnswered);
  counters_.answered++;
}

// armHellosOnSyn: arms the connection of the bare handshake copy in tcp_ as the engine's
// expectHello would on its SYN (seq the SYN's + 1; with strict, the SYN's TTL as the lowest and
// its timestamp as the oldest: the engine's floors for a first SYN; it replaces the arm if a
// repeated SYN raised them), if it is a client's SYN whose connection and sequence number the
// reader did not read a SYN with lately (the caller asks RememberSyn first) and arming is not
// paused. Answers whether it armed the connection. A SYN whose options are malformed or carry MD5
// is not armed: the engine does not arm those either. rmu_ held.
bool Queue::ArmOnSyn() {
  int64_t now = NowMs();
  if (!autoArmOn_ || (tcp_.flags & (kSyn | kAck)) != kSyn || now < synArmPausedUntil_) return false;
  TcpOptionsSeen o = ReadTcpOptions(tcp_);
  if (o.malformed || o.md5 || !RoomIn(&hello_, &helloSweptMs_)) return false;
  HelloExpectation e = autoArm_;
  e.seq = tcp_.seq + 1;
  e.clientLow = tcp_.srcLow;
  if (e.strict) {
    e.checks.minTtl = tcp_.ttl;
    e.checks.hasTsMin = o.hasTs;
    e.checks.tsMin = o.tsVal;
  }
  e.since = now;
  hello_[tcp_.key] = e;
  counters_.synArms++;
  return true;
}

// The reader's memory of SYNs (SynMemory), which keeps arming on the SYN (ArmOnSyn) from taking
// a repeated SYN for a first one. The engine takes a connection's TTL (and ISN) from its first SYN
// and keeps them; had the reader armed a connection again on a later SYN, that SYN's TTL would be
// its floor, and a SYN that dies before the server, then a SYN-ACK the server retransmits and
// fakes with the SYN's TTL, would pass the reader where the engine drops them. So for the packet
// in tcp_ this answers whether it is a bare SYN whose connection and sequence number the reader
// has not read a SYN with in the last kSynMemoryMs, and remembers any SYN. A SYN with another
// sequence number is a new connection on the same ports, for the engine too (port reuse); no
// SYN-ACK answers it unless the server got it, which the reader then sees as a repeat. A SYN-ACK
// renews the memory of the SYN it answers: a server retransmits them at most TCP_RTO_MAX apart,
// less than kSynMemoryMs. rmu_ held.
bool Queue::RememberSyn() {
  if ((tcp_.flags & kSyn) == 0 || logFd_ < 0) return false;  // the memory serves only the log group's arming
  int64_t now = NowMs();
  bool seen = synMemory_.Remember(tcp_.key, tcp_.seq, now);
  if ((tcp_.flags & kAck) != 0) {
    synMemory_.Renew(tcp_.key, tcp_.ack - 1, now);
    return false;
  }
  if (seen) counters_.synRepeats++;
  return !seen;
}

// A packet may have gone by that RememberSyn should have remembered (it could not be read, or was
// lost): no connection is armed on its SYN until the memory has outlived it. rmu_ held.
void Queue::PauseSynArmingLocked() {
  int64_t now = NowMs();
  if (now >= synArmPausedUntil_) counters_.synArmPauses++;
  synArmPausedUntil_ = now + kSynMemoryMs;
}

// Reads a queued packet once for the armed tables (expectHello, expectAfterHello) and the memory
// of first SYNs (a SYN with data or IP options is queued, and may be the engine's first SYN), and
// answers the meta flag of the verdict the reader gave it (kFlagHelloAllowed, kFlagAfterHello),
// or 0; rmu_ held.
uint32_t Queue::CheckArmed(const PacketInfo& pkt) {
  if (!ReadTcp(pkt.payload, pkt.payloadLen, &tcp_)) {
    // A packet whose connection cannot be told here (IPv6 extension headers, a copy cut short)
    // may belong to an armed one: disarm them all rather than let a later packet match a stale entry.
    ForgetAllArmedLocked();
    return 0;
  }
  RememberSyn();  // a SYN with data or IP options is queued, and may be the engine's first SYN
  return AnyArmedLocked() ? CheckReadArmed(pkt) : 0;
}

// Whether any connection is armed or has an allowed tail: else no packet needs reading for them; rmu_ held.
bool Queue::AnyArmedLocked() const {
  return !afterHello_.empty() || !hello_.empty() || !tail_.empty();
}

// Empties the armed tables (and the allowed tails) and pauses arming on the SYN: used when a
// packet may have gone by unread; rmu_ held.
void Queue::ForgetAllArmedLocked() {
  afterHello_.clear();
  hello_.clear();
  tail_.clear();
  PauseSynArmingLocked();
}

// CheckArmed for a packet already read into tcp_; rmu_ held.
uint32_t Queue::CheckReadArmed(const PacketInfo& pkt) {
  if (!hello_.empty() && CheckHello(pkt)) return kFlagHelloAllowed;
  if (!afterHello_.empty() && CheckAfterHello(pkt)) return kFlagAfterHello;
  if (!tail_.empty() && CheckTail(pkt)) return kFlagAfterHello;
  return 0;
}

// A packet (in tcp_) of a connection JavaScript armed with expectHello on its SYN: the server's
// SYN-ACK answering that SYN notes the server's sequence number and keeps the entry; the client's
// next packet is the hello. If it starts right after the SYN, acknowledges exactly the SYN-ACK,
// the server would keep it (PassesFakeChecks, with the SYN's TTL and timestamp), it is one plain
// ClientHello (SimpleHelloName) and its name with the server port is one JavaScript said the policy
// allows (allowHelloName), the reader lets it on as the engine would an allowed first hello
// (repeat with the inspect mark: the flow stays inspected until its next record) and flags it.
// Any other packet of the connection disarms it. Answers whether the reader gave the verdict.
bool Queue::CheckHello(const PacketInfo& pkt) {
  auto it = hello_.find(tcp_.key);
  if (it == hello_.end()) return false;
  if (!it->second.serverSeen && AnswersSyn(tcp_, it->second)) {
    it->second.serverSeen = true;
    it->second.serverNext = tcp_.seq + 1;
    return false;  // the handshake path accepts it
  }
  HelloExpectation e = it->second;
  hello_.erase(it);
  if (NowMs() - e.since > kAfterHelloExpiryMs) return false;  // outlived by the memory of its SYN
  if (!e.serverSeen || tcp_.srcLow != e.clientLow || tcp_.seq != e.seq || tcp_.ack != e.serverNext ||
      (tcp_.flags & kControl) != kAck || tcp_.payloadLen == 0 || !PassesFakeChecks(tcp_, pkt.skbInfo, e.checks) ||
      !SimpleHelloName(tcp_.payload, tcp_.payloadLen, e.maxHelloBytes, &helloName_)) {
    return false;
  }
  uint16_t port = PortAt(tcp_.tcp + 2);  // the client's destination
  AppendPort(port, &helloName_);
  if (helloNames_.count(helloName_) == 0) return false;
  // With the answer mark the rules end the flow's inspection on the server's first data packet if
  // it starts a ServerHello that is not a HelloRetryRequest; only if nothing the client chose can
  // make a later segment of a HelloRetryRequest start like one (EchoCannotPassForServerHello).
  uint32_t answer = e.answerMark != 0 && EchoCannotPassForServerHello(tcp_.payload, tcp_.payloadLen) ? e.answerMark : 0;
  // The answer bit is the rules' (a packet mark may carry it from elsewhere): set or cleared.
  early_.push_back(MarkVerdict(pkt, e.mark | answer, e.mask | e.answerMark));
  counters_.helloAllows++;
  if (answer != 0) counters_.helloAnswerMarks++;
  ArmAfterPlainHello(e);
  return true;
}

// After CheckHello let the hello in tcp_ on: arms the connection's next record as the engine
// will once it has read the hello (armAfterHello), since the client's next flight may come
// before: right after the hello, with the checks the engine then makes (nextSegmentChecks): the
// hello's timestamp is the oldest kept, its ACK (exactly the SYN-ACK's) the oldest ACK (strict).
void Queue::ArmAfterPlainHello(const HelloExpectation& e) {
  AfterHelloExpectation next{static_cast<uint32_t>(e.seq + tcp_.payloadLen), e.allowMark, e.mask, e.clientLow, e.checks,
                             NowMs()};
  if (e.strict) {
    TcpOptionsSeen o = ReadTcpOptions(tcp_);
    if (o.hasTs) {
      next.checks.hasTsMin = true;
      next.checks.tsMin = o.tsVal;
    }
    next.checks.hasAckMin = true;
    next.checks.ackMin = tcp_.ack;
  }
  // The record after the hello ends inspection only once the server has answered the hello.
  next.checks.hasAckAbove = true;
  next.checks.ackAbove = e.serverNext;
  if (RoomIn(&afterHello_, &afterHelloSweptMs_)) afterHello_[tcp_.key] = next;
}

// A client packet (in tcp_) of a connection JavaScript armed with expectAfterHello: if it starts exactly at
// the expected record, the record ends inspection (EndsAfterHello), and the server would keep it
// (PassesFakeChecks, with the connection's state as it stood when armed), the reader allows it as the engine would
// (repeat with the allow mark, which the rules save to the connection) and flags it for
// JavaScript. Any packet of an armed connection disarms it, matching or not: after one packet the
// engine's view may have moved on. Answers whether the reader gave the packet its verdict; rmu_ held.
bool Queue::CheckAfterHello(const PacketInfo& pkt) {
  auto it = afterHello_.find(tcp_.key);
  if (it == afterHello_.end()) return false;
  AfterHelloExpectation e = it->second;
  afterHello_.erase(it);
  if (tcp_.srcLow != e.clientLow || tcp_.seq != e.seq ||
      (tcp_.flags & kControl) != kAck ||
      !EndsAfterHello(tcp_.payload, tcp_.payloadLen) || !PassesFakeChecks(tcp_, pkt.skbInfo, e.checks)) {
    return false;
  }
  early_.push_back(MarkVerdict(pkt, e.allow, e.mask));
  counters_.afterHelloAllows++;
  if (RoomIn(&tail_, &tailSweptMs_, kTailMs)) tail_[tcp_.key] = {e.allow, e.mask, NowMs()};
  return true;
}

// A packet (in tcp_) of a connection whose record after the hello the reader allowed (AllowedTail)
// within kTailMs, and no SYN: the flow is decided, and the reader gives the packet the allow mark
// as the engine gives a decided flow's stragglers, instead of making it wait for JavaScript. A
// SYN (a new connection on the same ports, queued or logged) or a late packet ends the entry and
// takes the JavaScript path. Answers whether the reader gave the verdict; rmu_ held.
bool Queue::CheckTail(const PacketInfo& pkt) {
  auto it = tail_.find(tcp_.key);
  if (it == tail_.end()) return false;
  if ((tcp_.flags & kSyn) != 0 || NowMs() - it->second.since > kTailMs) {
    tail_.erase(it);
    return false;
  }
  early_.push_back(MarkVerdict(pkt, it->second.allow, it->second.mask));
  counters_.tailAllows++;
  return true;
}

// Calls onPacket for each packet of the connection `key` in the pending batch, in order; false
// as soon as onPacket answers false or a packet cannot be read (it might be one of the
// connection's), else true. rmu_ held; tcp_ is the scratch.
template <class Fn>
bool Queue::EachPendingOf(const std::u16string& key, Fn onPacket) {
  const Batch& b = pending_;
  for (uint32_t i = 0; i < b.count; i++) {
    const uint32_t* m = &b.meta[static_cast<size_t>(i) * kMetaStride];
    if (!ReadTcp(b.data.data() + m[5], m[6], &tcp_)) return false;
    if (tcp_.key == key && !onPacket(tcp_)) return false;
  }
  return true;
}

// Whether a packet of the connection `key` waits in the pending batch; a packet that cannot be
// read counts as one of the connection's: it might be. rmu_ held.
bool Queue::PendingHasKey(const std::u16string& key) {
  return !EachPendingOf(key, [](const TcpView&) { return false; });
}

// For expectHello: true when the packets of the connection already read but not yet handed to
// JavaScript leave the entry valid, which only the SYN-ACK it waits for does (noted in `e`). rmu_ held.
bool Queue::PendingAllowsHello(const std::u16string& key, HelloExpectation* e) {
  return EachPendingOf(key, [e](const TcpView& v) {
    if (e->serverSeen || !AnswersSyn(v, *e)) return false;
    e->serverSeen = true;
    e->serverNext = v.seq + 1;
    return true;
  });
}

// Wakes the loop for the pending batch or a read error, once until it has taken them; rmu_ held
// (or, in the constructor, no reader thread yet).
void Queue::SignalLocked() {
  lazySince_ = 0;  // the loop takes every packet pending
  if (signalled_) return;
  signalled_ = true;
  lastSignalMs_ = NowMs();
  uv_async_send(&handles_->ready);
}

// Sends the verdicts the reader gave itself in this datagram: bare SYN/SYN-ACKs, which carry
// nothing to inspect and should not wait for the JavaScript engine (native/README.md,
// "Handshakes"), and client data after a ClientHello that ends its inspection ("After the
// hello"). They go to the sender ahead of any verdict JS gives for them.
void Queue::SendEarlyVerdicts() {
  size_t n = early_.size();
  if (earlyMsgs_.size() < n * kVerdictMsgMax) earlyMsgs_.resize(n * kVerdictMsgMax);
  size_t off = 0;
  for (const EarlyVerdict& v : early_) {
    off += BuildVerdict(earlyMsgs_.data() + off, queue_, v.id, v.verdict, v.hasMark, v.mark);
  }
  sender_.Push(earlyMsgs_.data(), off, n);
  early_.clear();
}

// The reader thread: waits for the socket (or the stop eventfd), reads what is there, and stops
// reading while the pending batch is full, until the loop takes it: packets then wait in the
// kernel queue, whose length is the real buffer.
void Queue::ReaderLoop() {
  // A negative fd (no log group) is skipped by poll().
  pollfd fds[3] = {{fd_, POLLIN, 0}, {wakeFd_, POLLIN, 0}, {logFd_, POLLIN, 0}};
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(rmu_);
      taken_.wait(lock, [this] { return stopReader_ || !Full(pending_, batchMax_); });
      if (stopReader_) return;
    }
    int timeout = -1;
    {
      std::lock_guard<std::mutex> lock(rmu_);
      if (lazySince_ != 0) timeout = static_cast<int>(std::max<int64_t>(0, lazySince_ + kLazyWakeMs - NowMs()));
    }
    int n = poll(fds, 3, timeout);
    if (n < 0 && errno != EINTR) {
      ReportReadError(errno, "polling");
      return;  // poll() itself failing means the fds are gone: nothing more can be read
    }
    if (n == 0) {
      // Packets the reader allowed itself waited kLazyWakeMs for a wake-up that brings them along.
      std::lock_guard<std::mutex> lock(rmu_);
      if (lazySince_ != 0 && NowMs() >= lazySince_ + kLazyWakeMs && handles_ != nullptr) SignalLocked();
      continue;
    }
    if (n < 0) continue;
    if (fds[1].revents != 0) return;
    // POLLERR on a netlink socket means sk_err is set, which for us is ENOBUFS (the kernel
    // dropped messages because the receive buffer was full): the next recv() returns it once,
    // and ReadAvailable counts it and reads on.
    int err = ReadAvailable(false);
    if (err != 0) {
      bool log;
      {
        std::lock_guard<std::mutex> lock(rmu_);
        log = logFailed_;
        logFailed_ = false;
      }
      ReportReadError(err, log ? "receiving the handshake copies (NFLOG group) of" : "receiving from");
      usleep(10000);  // a persistent failure must not spin
    }
  }
}

// Reader thread: leaves a receive failure for the loop, which reports it to onError.
void Queue::ReportReadError(int err, const char* what) {
  std::lock_guard<std::mutex> lock(rmu_);
  readErr_ = err;
  readErrWhat_ = what;
  SignalLocked();
}

void Queue::StopReader() {
  if (!reader_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(rmu_);
    stopReader_ = true;
  }
  taken_.notify_all();
  uint64_t one = 1;
  ssize_t ignored = write(wakeFd_, &one, sizeof one);
  (void)ignored;
  reader_.join();
}

// On the loop thread, after the reader's uv_async_send: take the pending batch (the reader may
// go on filling a fresh one meanwhile) and hand it to JS, then report a receive failure if any.
void Queue::OnReady() {
  if (closed_) return;
  int err;
  std::string what;
  {
    std::lock_guard<std::mutex> lock(rmu_);
    signalled_ = false;
    std::swap(pending_, delivering_);
    pending_.Clear();
    err = readErr_;
    what = readErrWhat_;
    readErr_ = 0;
  }
  taken_.notify_all();
  Napi::Env env(env_);
  Napi::HandleScope scope(env);
  if (delivering_.count > 0) DeliverBatch();
  if (err != 0 && !closed_) {
    DeliverError("ERR_QUEUE_RECV", err,
                 what + " NFQUEUE " + std::to_string(queue_) + ": " + std::strerror(err));
  }
}

void Queue::DeliverBatch() {
  Napi::Env env(env_);
  Batch& b = delivering_;
  uint32_t count = b.count;
  Napi::Buffer<uint8_t> data;
  bool handedOver = b.data.size() >= kHandOverMinBytes;
  if (handedOver) {
    // Handed over, not copied (kHandOverMinBytes): the vector moves to the heap and is freed
    // when the Buffer is collected; this batch gets fresh memory for its next turn.
    auto* owned = new std::vector<uint8_t>(std::move(b.data));
    data = Napi::Buffer<uint8_t>::New(env, owned->data(), owned->size(),
                                      [](Napi::Env, uint8_t*, std::vector<uint8_t>* v) { delete v; }, owned);
    b.data = std::vector<uint8_t>();
    b.data.reserve(kBatchReserve);
  } else {
    data = Napi::Buffer<uint8_t>::Copy(env, b.data.data(), b.data.size());
  }
  size_t metaBytes = b.meta.size() * sizeof(uint32_t);
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, metaBytes);
  std::memcpy(ab.Data(), b.meta.data(), metaBytes);
  Napi::Uint32Array meta = Napi::Uint32Array::New(env, b.meta.size(), ab, 0);
  b.Clear();  // keeps its capacity for the next swap
  {
    std::lock_guard<std::mutex> lock(rmu_);
    counters_.batches++;
    if (handedOver) counters_.batchesHandedOver++;
  }

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

namespace {

// A connection key from JavaScript (src/flow/key.ts) as its UTF-16 code units in a Uint16Array
// and their count: 6 for IPv4, 18 for IPv6. Units, not a string: a port from 0xd800 to 0xdfff is
// a lone surrogate, which string conversions may replace.
bool ReadKey(const Napi::Value& units, const Napi::Value& count, std::u16string* key) {
  if (!units.IsTypedArray() || units.As<Napi::TypedArray>().TypedArrayType() != napi_uint16_array ||
      !count.IsNumber()) {
    return false;
  }
  Napi::Uint16Array a = units.As<Napi::Uint16Array>();
  double n = count.As<Napi::Number>().DoubleValue();
  if ((n != 6 && n != 18) || a.ElementLength() < static_cast<size_t>(n)) return false;
  const uint16_t* d = a.Data();
  key->assign(d, d + static_cast<size_t>(n));
  return true;
}


}  // namespace

// expectAfterHello(keyUnits, keyLength, clientLow, seq, allowMark, mask, checks: Uint32Array
// packed as FakeChecks): true when armed. Refused (false) when a packet of the flow (or one the
// reader cannot attribute) is already read but not yet handed to JavaScript (the engine has not
// seen it, so the next packet is not the one it expects), when many packets wait (the scan would
// hold the reader up), or when kMaxAfterHello flows are armed.
Napi::Value Queue::ExpectAfterHello(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (ThrowIfClosed(env)) return env.Undefined();
  std::u16string key;
  uint32_t seq, allow, mask;
  const uint32_t* checks;
  if (info.Length() < 7 || !ReadUint32Words(info[6], kFakeCheckWords, &checks) || !ReadKey(info[0], info[1], &key) || !info[2].IsBoolean() || !ReadUint32(info[3], &seq) ||
      !ReadUint32(info[4], &allow) || !ReadUint32(info[5], &mask) || (allow & ~mask) != 0) {
    ThrowCodeError(env, "ERR_ARG", 0,
                   "expectAfterHello(keyUnits: Uint16Array, keyLength: 6 | 18, clientLow: boolean, seq: uint32, "
                   "allowMark: uint32 within mask, mask: uint32, checks: Uint32Array(9))");
    return env.Undefined();
  }
  AfterHelloExpectation e{seq, allow, mask, info[2].As<Napi::Boolean>().Value(), UnpackFakeChecks(checks), NowMs()};
  std::lock_guard<std::mutex> lock(rmu_);
  if (pending_.count > kMaxPendingScan || PendingHasKey(key) || !RoomIn(&afterHello_, &afterHelloSweptMs_)) {
    return Napi::Boolean::New(env, false);
  }
  afterHello_[key] = e;
  return Napi::Boolean::New(env, true);
}

// forget(keyUnits, keyLength, hello: boolean): takes back expectHello (hello true) or
// expectAfterHello for a flow whose engine view moved on; no-op when not armed. Only the one
// asked for: the reader arms a hello's next record itself, which the engine's taking back of the
// hello's arm must leave.
Napi::Value Queue::Forget(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (ThrowIfClosed(env)) return env.Undefined();
  std::u16string key;
  if (info.Length() < 3 || !ReadKey(info[0], info[1], &key) || !info[2].IsBoolean()) {
    ThrowCodeError(env, "ERR_ARG", 0, "forget(keyUnits: Uint16Array, keyLength: 6 | 18, hello: boolean)");
    return env.Undefined();
  }
  std::lock_guard<std::mutex> lock(rmu_);
  if (info[2].As<Napi::Boolean>().Value()) hello_.erase(key);
  else afterHello_.erase(key);
  return env.Undefined();
}

// expectHello(keyUnits, keyLength, clientLow, seq, checks: Uint32Array packed as FakeChecks,
// arm: Uint32Array of kHelloArmWords: mark, allowMark, mask, maxHelloBytes, strict, serverKnown,
// serverNext): true when armed (see CheckHello). serverNext is the SYN-ACK's sequence number + 1
// when JavaScript has seen it (serverKnown 1). Refused (false) as expectAfterHello is, except
// that the SYN-ACK the entry waits for may already wait for JavaScript.
Napi::Value Queue::ExpectHello(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (ThrowIfClosed(env)) return env.Undefined();
  std::u16string key;
  uint32_t seq;
  const uint32_t *checks, *w;
  if (info.Length() < 6 || !ReadUint32Words(info[4], kFakeCheckWords, &checks) ||
      !ReadUint32Words(info[5], kHelloArmWords, &w) || !ReadKey(info[0], info[1], &key) || !info[2].IsBoolean() ||
      !ReadUint32(info[3], &seq) || !ArmMarksOk(w)) {
    ThrowCodeError(env, "ERR_ARG", 0,
                   "expectHello(keyUnits: Uint16Array, keyLength: 6 | 18, clientLow: boolean, seq: uint32, "
                   "checks: Uint32Array(9), arm: Uint32Array(8), marks within the mask, answerMark outside it)");
    return env.Undefined();
  }
  HelloExpectation e = HelloFromArm(w, seq, info[2].As<Napi::Boolean>().Value(), UnpackFakeChecks(checks), NowMs());
  std::lock_guard<std::mutex> lock(rmu_);
  if (pending_.count > kMaxPendingScan || !PendingAllowsHello(key, &e) || !RoomIn(&hello_, &helloSweptMs_)) {
    return Napi::Boolean::New(env, false);
  }
  hello_[key] = e;
  return Napi::Boolean::New(env, true);
}

// armHellosOnSyn(arm: Uint32Array(kHelloArmWords) | null, checks: Uint32Array(kFakeCheckWords)):
// while `arm` is set, the reader arms every connection whose bare SYN it reads from the log group
// itself, as expectHello would with these marks and limits (serverKnown and serverNext are not
// read; of `checks`, verifyChecksum and maxPayload are the template, the rest comes from the SYN:
// ArmOnSyn). null stops it. JavaScript keeps its own expectHello calls, which replace an entry.
Napi::Value Queue::ArmHellosOnSyn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (ThrowIfClosed(env)) return env.Undefined();
  const uint32_t *checks, *w = nullptr;
  bool off = info.Length() >= 1 && info[0].IsNull();
  if (info.Length() < 2 || !ReadUint32Words(info[1], kFakeCheckWords, &checks) ||
      (!off && (!ReadUint32Words(info[0], kHelloArmWords, &w) || !ArmMarksOk(w)))) {
    ThrowCodeError(env, "ERR_ARG", 0,
                   "armHellosOnSyn(arm: Uint32Array(8) | null, checks: Uint32Array(9)), marks within the mask, answerMark outside it");
    return env.Undefined();
  }
  std::lock_guard<std::mutex> lock(rmu_);
  autoArmOn_ = !off;
  if (off) return env.Undefined();
  FakeChecks c = UnpackFakeChecks(checks);
  c.minTtl = 0;
  c.hasTsMin = false;
  c.hasAckMin = false;
  autoArm_ = HelloFromArm(w, 0, false, c, 0);  // ArmOnSyn fills in the connection's
  return env.Undefined();
}

// allowHelloName(name: string, port: uint16): the policy allows a plain first hello naming
// `name` (as SimpleHelloName reads it) to `port`. False when kMaxHelloNames names are allowed.
Napi::Value Queue::AllowHelloName(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (ThrowIfClosed(env)) return env.Undefined();
  uint32_t port;
  if (info.Length() < 2 || !info[0].IsString() || !ReadUint32(info[1], &port) || port > 0xffff) {
    ThrowCodeError(env, "ERR_ARG", 0, "allowHelloName(name: string, port: uint16)");
    return env.Undefined();
  }
  std::string key = info[0].As<Napi::String>().Utf8Value();
  AppendPort(static_cast<uint16_t>(port), &key);
  std::lock_guard<std::mutex> lock(rmu_);
  if (helloNames_.size() >= kMaxHelloNames && helloNames_.count(key) == 0) return Napi::Boolean::New(env, false);
  helloNames_.insert(std::move(key));
  return Napi::Boolean::New(env, true);
}

// clearHelloNames(): forgets every allowHelloName (the policy changed).
Napi::Value Queue::ClearHelloNames(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (ThrowIfClosed(env)) return env.Undefined();
  std::lock_guard<std::mutex> lock(rmu_);
  helloNames_.clear();
  return env.Undefined();
}

}  // namespace fg
