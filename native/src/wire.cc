// Netlink framing for nfnetlink_queue. See wire.h and native/README.md ("Wire format").
#include "wire.h"

#include <arpa/inet.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_log.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <linux/netlink.h>
#include <sys/socket.h>

#include <cstring>

namespace fg {
namespace {

// nlmsghdr (16 bytes) + nfgenmsg (4 bytes): every nfnetlink message starts with both.
constexpr size_t kHeadLen = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(nfgenmsg));

// Writes nlmsghdr + nfgenmsg; the caller patches nlmsg_len once the attributes are in. `queue`
// is the queue number, or the log group for NFNL_SUBSYS_ULOG.
size_t PutHead(uint8_t* buf, uint16_t msgType, uint16_t flags, uint32_t seq, uint16_t queue,
               uint8_t subsys = NFNL_SUBSYS_QUEUE) {
  nlmsghdr nlh;
  std::memset(&nlh, 0, sizeof nlh);
  nlh.nlmsg_type = static_cast<uint16_t>((subsys << 8) | msgType);
  nlh.nlmsg_flags = static_cast<uint16_t>(NLM_F_REQUEST | flags);
  nlh.nlmsg_seq = seq;
  std::memcpy(buf, &nlh, sizeof nlh);
  nfgenmsg nfg;
  nfg.nfgen_family = AF_UNSPEC;
  nfg.version = NFNETLINK_V0;
  nfg.res_id = htons(queue);  // nfgenmsg.res_id: the queue number, big-endian
  std::memcpy(buf + NLMSG_HDRLEN, &nfg, sizeof nfg);
  return kHeadLen;
}

// Appends one nlattr with its value and zero padding to 4 bytes; returns the new offset.
size_t PutAttr(uint8_t* buf, size_t off, uint16_t type, const void* data, size_t len) {
  nlattr nla;
  nla.nla_len = static_cast<uint16_t>(NLA_HDRLEN + len);
  nla.nla_type = type;
  std::memcpy(buf + off, &nla, sizeof nla);
  std::memcpy(buf + off + NLA_HDRLEN, data, len);
  size_t end = off + NLA_HDRLEN + len;
  size_t padded = off + NLA_ALIGN(NLA_HDRLEN + len);
  std::memset(buf + end, 0, padded - end);
  return padded;
}

size_t PutBe32Attr(uint8_t* buf, size_t off, uint16_t type, uint32_t value) {
  uint32_t be = htonl(value);
  return PutAttr(buf, off, type, &be, sizeof be);
}

void SetLen(uint8_t* buf, size_t len) {
  uint32_t l = static_cast<uint32_t>(len);
  std::memcpy(buf + offsetof(nlmsghdr, nlmsg_len), &l, sizeof l);
}

uint32_t Be32At(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return ntohl(v);
}

// Calls onAttr(type, value, length) for each attribute of the nfnetlink message msg[0, msgLen),
// after its headers, until one is malformed.
template <class Fn>
void EachAttr(uint8_t* msg, size_t msgLen, Fn onAttr) {
  size_t off = kHeadLen;
  while (msgLen - off >= NLA_HDRLEN) {
    nlattr nla;
    std::memcpy(&nla, msg + off, sizeof nla);
    if (nla.nla_len < NLA_HDRLEN || nla.nla_len > msgLen - off) break;
    onAttr(nla.nla_type & NLA_TYPE_MASK, msg + off + NLA_HDRLEN, static_cast<size_t>(nla.nla_len - NLA_HDRLEN));
    size_t step = NLA_ALIGN(nla.nla_len);
    if (step >= msgLen - off) break;
    off += step;
  }
}

// The attribute numbers of a packet message's fields in one subsystem (0: none there).
struct PacketAttrs {
  unsigned hdr, mark, inDev, outDev, skbInfo, capLen, payload, prefix;
  bool hasId;  // the header starts with a packet id (NFQUEUE) or with hw_protocol (NFLOG)
};
constexpr PacketAttrs kQueueAttrs{NFQA_PACKET_HDR, NFQA_MARK, NFQA_IFINDEX_INDEV, NFQA_IFINDEX_OUTDEV,
                                  NFQA_SKB_INFO, NFQA_CAP_LEN, NFQA_PAYLOAD, 0, true};
constexpr PacketAttrs kLogAttrs{NFULA_PACKET_HDR, NFULA_MARK, NFULA_IFINDEX_INDEV, NFULA_IFINDEX_OUTDEV,
                                0, 0, NFULA_PAYLOAD, NFULA_PREFIX, false};

// Decodes a packet message of either subsystem into pkt: kind `kind`, or Bad without a header.
// nfqnl_msg_packet_hdr is {be32 packet_id, be16 hw_protocol, u8 hook}; nfulnl_msg_packet_hdr
// {be16 hw_protocol, u8 hook, u8 pad}. NFLOG has no id, checksum status or cut length.
MsgResult DecodePacket(uint8_t* msg, size_t msgLen, PacketInfo* pkt, const PacketAttrs& ids, MsgKind kind) {
  nlmsghdr nlh;
  std::memcpy(&nlh, msg, sizeof nlh);
  if (msgLen < kHeadLen) return {MsgKind::Bad, nlh.nlmsg_seq, 0};
  std::memset(pkt, 0, sizeof *pkt);
  bool haveHdr = false, haveCapLen = false;
  size_t hw = ids.hasId ? 4 : 0;  // where hw_protocol is in the header
  EachAttr(msg, msgLen, [&](unsigned type, uint8_t* val, size_t valLen) {
    if (type == 0) return;
    if (type == ids.hdr) {
      if (valLen >= hw + 3) {
        if (ids.hasId) pkt->id = Be32At(val);
        pkt->hwProtocol = static_cast<uint16_t>((val[hw] << 8) | val[hw + 1]);
        pkt->hook = val[hw + 2];
        haveHdr = true;
      }
    } else if (type == ids.payload) {
      pkt->payload = val;
      pkt->payloadLen = static_cast<uint32_t>(valLen);
    } else if (type == ids.prefix) {
      pkt->prefix = val;
      pkt->prefixLen = static_cast<uint32_t>(valLen);
    } else if (valLen >= 4) {
      uint32_t v = Be32At(val);
      if (type == ids.mark) pkt->mark = v;
      else if (type == ids.inDev) pkt->inDev = v;
      else if (type == ids.outDev) pkt->outDev = v;
      else if (type == ids.skbInfo) pkt->skbInfo = v;
      else if (type == ids.capLen) {  // original length when the payload was cut to copy_range
        pkt->capLen = v;
        haveCapLen = true;
      }
    }
  });
  if (!haveHdr) return {MsgKind::Bad, nlh.nlmsg_seq, 0};
  if (!haveCapLen) pkt->capLen = pkt->payloadLen;
  return {kind, nlh.nlmsg_seq, 0};
}

}  // namespace

size_t BuildBind(uint8_t* buf, const BindConfig& cfg, uint32_t seq) {
  size_t off = PutHead(buf, NFQNL_MSG_CONFIG, NLM_F_ACK, seq, cfg.queue);

  nfqnl_msg_config_cmd cmd;  // NFQA_CFG_CMD: command u8, pad u8, pf be16
  std::memset(&cmd, 0, sizeof cmd);
  cmd.command = NFQNL_CFG_CMD_BIND;
  cmd.pf = htons(AF_UNSPEC);  // ignored by kernels >= 3.8: one bind covers IPv4 and IPv6
  off = PutAttr(buf, off, NFQA_CFG_CMD, &cmd, sizeof cmd);

  nfqnl_msg_config_params params;  // NFQA_CFG_PARAMS: copy_range be32, copy_mode u8 (packed)
  std::memset(&params, 0, sizeof params);
  params.copy_range = htonl(cfg.copyRange);
  params.copy_mode = NFQNL_COPY_PACKET;
  off = PutAttr(buf, off, NFQA_CFG_PARAMS, &params, sizeof params);

  off = PutBe32Attr(buf, off, NFQA_CFG_QUEUE_MAXLEN, cfg.maxLen);

  // NFQA_CFG_MASK says which flags this message sets; NFQA_CFG_FLAGS gives their values.
  uint32_t mask = NFQA_CFG_F_GSO | NFQA_CFG_F_FAIL_OPEN;
  uint32_t flags = (cfg.gso ? NFQA_CFG_F_GSO : 0) | (cfg.failOpen ? NFQA_CFG_F_FAIL_OPEN : 0);
  off = PutBe32Attr(buf, off, NFQA_CFG_MASK, mask);
  off = PutBe32Attr(buf, off, NFQA_CFG_FLAGS, flags);

  SetLen(buf, off);
  return off;
}

size_t BuildUnbind(uint8_t* buf, uint16_t queue, uint32_t seq) {
  size_t off = PutHead(buf, NFQNL_MSG_CONFIG, 0, seq, queue);
  nfqnl_msg_config_cmd cmd;
  std::memset(&cmd, 0, sizeof cmd);
  cmd.command = NFQNL_CFG_CMD_UNBIND;
  cmd.pf = htons(AF_UNSPEC);
  off = PutAttr(buf, off, NFQA_CFG_CMD, &cmd, sizeof cmd);
  SetLen(buf, off);
  return off;
}

size_t BuildLogBind(uint8_t* buf, uint16_t group, uint32_t copyRange, uint32_t seq) {
  size_t off = PutHead(buf, NFULNL_MSG_CONFIG, NLM_F_ACK, seq, group, NFNL_SUBSYS_ULOG);
  nfulnl_msg_config_cmd cmd{NFULNL_CFG_CMD_BIND};
  off = PutAttr(buf, off, NFULA_CFG_CMD, &cmd, sizeof cmd);
  nfulnl_msg_config_mode mode;  // NFULA_CFG_MODE: copy_range be32, copy_mode u8, pad u8
  std::memset(&mode, 0, sizeof mode);
  mode.copy_range = htonl(copyRange);
  mode.copy_mode = NFULNL_COPY_PACKET;
  off = PutAttr(buf, off, NFULA_CFG_MODE, &mode, sizeof mode);
  // Each message goes out on its own, at once: the default (100 per datagram, or after 1 s)
  // would keep a SYN from the reader until long after the client's first data was queued.
  off = PutBe32Attr(buf, off, NFULA_CFG_QTHRESH, 1);
  SetLen(buf, off);
  return off;
}

size_t BuildLogUnbind(uint8_t* buf, uint16_t group, uint32_t seq) {
  size_t off = PutHead(buf, NFULNL_MSG_CONFIG, 0, seq, group, NFNL_SUBSYS_ULOG);
  nfulnl_msg_config_cmd cmd{NFULNL_CFG_CMD_UNBIND};
  off = PutAttr(buf, off, NFULA_CFG_CMD, &cmd, sizeof cmd);
  SetLen(buf, off);
  return off;
}

size_t BuildVerdict(uint8_t* buf, uint16_t queue, uint32_t id, uint32_t verdict,
                    bool hasMark, uint32_t mark) {
  // No NLM_F_ACK: the kernel answers only when a verdict fails (NLMSG_ERROR, e.g. ENOENT).
  size_t off = PutHead(buf, NFQNL_MSG_VERDICT, 0, 0, queue);
  nfqnl_msg_verdict_hdr vh;  // NFQA_VERDICT_HDR: verdict be32, id be32
  vh.verdict = htonl(verdict);
  vh.id = htonl(id);
  off = PutAttr(buf, off, NFQA_VERDICT_HDR, &vh, sizeof vh);
  if (hasMark) off = PutBe32Attr(buf, off, NFQA_MARK, mark);  // NFQA_MARK: new skb->mark
  SetLen(buf, off);
  return off;
}

bool HasLogPrefix(const PacketInfo& pkt, const char* prefix) {
  size_t n = std::strlen(prefix);
  // The kernel sends the prefix with its terminating NUL; accept it without one too.
  return pkt.prefix != nullptr && (pkt.prefixLen == n || (pkt.prefixLen == n + 1 && pkt.prefix[n] == 0)) &&
         std::memcmp(pkt.prefix, prefix, n) == 0;
}

size_t MessageAt(const uint8_t* buf, size_t len, size_t off) {
  if (off >= len || len - off < NLMSG_HDRLEN) return 0;
  uint32_t msgLen;
  std::memcpy(&msgLen, buf + off + offsetof(nlmsghdr, nlmsg_len), sizeof msgLen);
  if (msgLen < NLMSG_HDRLEN || msgLen > len - off) return 0;
  return msgLen;
}

MsgResult DecodeMessage(uint8_t* msg, size_t msgLen, PacketInfo* pkt) {
  nlmsghdr nlh;
  std::memcpy(&nlh, msg, sizeof nlh);
  MsgResult res{MsgKind::Other, nlh.nlmsg_seq, 0};

  if (nlh.nlmsg_type == NLMSG_ERROR) {
    // nlmsgerr: int error (0 = ack, else -errno), then the request's nlmsghdr (and, without
    // NETLINK_CAP_ACK, its payload). The request's seq is in both headers; use the outer one.
    if (msgLen < NLMSG_HDRLEN + sizeof(int)) return {MsgKind::Bad, nlh.nlmsg_seq, 0};
    int error;
    std::memcpy(&error, msg + NLMSG_HDRLEN, sizeof error);
    if (error == 0) return {MsgKind::Ack, nlh.nlmsg_seq, 0};
    return {MsgKind::Error, nlh.nlmsg_seq, -error};
  }
  if (nlh.nlmsg_type == ((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET)) {
    return DecodePacket(msg, msgLen, pkt, kLogAttrs, MsgKind::Logged);
  }
  if (nlh.nlmsg_type != ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET)) return res;
  return DecodePacket(msg, msgLen, pkt, kQueueAttrs, MsgKind::Packet);
}

namespace {

uint16_t U16(const uint8_t* b) { return static_cast<uint16_t>((b[0] << 8) | b[1]); }

/** Where a packet's TCP header is: l3 its offset, ipEnd the end the IP header declares (not
 * clipped to the bytes present), the addresses and their length, the TTL (hop limit). */
struct TcpAt {
  size_t l3, ipEnd, addrLen;
  const uint8_t *src, *dst;
  uint8_t ttl;
};

// IPv4, or IPv6 without extension headers, carrying TCP and not a fragment; false otherwise.
bool LocateTcp(const uint8_t* ip, size_t len, TcpAt* t) {
  if (ip == nullptr || len < 1) return false;
  int version = ip[0] >> 4;
  if (version == 4) {
    if (len < 20) return false;
    t->l3 = static_cast<size_t>(ip[0] & 0x0f) * 4;
    uint16_t frag = U16(ip + 6);
    t->ipEnd = U16(ip + 2);
    if (t->l3 < 20 || ip[9] != 6 /* TCP */ || (frag & 0x3fff) != 0 || t->ipEnd < t->l3) return false;
    t->src = ip + 12;
    t->dst = ip + 16;
    t->addrLen = 4;
    t->ttl = ip[8];
    return true;
  }
  if (version == 6) {
    if (len < 40 || ip[6] != 6 /* next header TCP, no extension headers */) return false;
    t->l3 = 40;
    t->ipEnd = 40 + static_cast<size_t>(U16(ip + 4));
    t->src = ip + 8;
    t->dst = ip + 24;
    t->addrLen = 16;
    t->ttl = ip[7];
    return true;
  }
  return false;
}

// Appends one endpoint of a key: its address as 16-bit units, then its port.
void AppendEndpoint(std::u16string* key, const uint8_t* addr, size_t addrLen, uint16_t port) {
  for (size_t i = 0; i < addrLen; i += 2) key->push_back(static_cast<char16_t>(U16(addr + i)));
  key->push_back(static_cast<char16_t>(port));
}

}  // namespace

bool IsBareHandshake(const uint8_t* ip, size_t len) {
  TcpAt t;
  if (!LocateTcp(ip, len, &t) || len < t.l3 + 14) return false;  // up to the TCP flags
  const uint8_t* tcp = ip + t.l3;
  size_t l4 = static_cast<size_t>(tcp[12] >> 4) * 4;
  uint8_t flags = tcp[13];
  constexpr uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04;
  return l4 >= 20 && t.ipEnd - t.l3 == l4 && (flags & (kSyn | kFin | kRst)) == kSyn;
}

bool CutToHeaders(uint8_t* ip, size_t* len) {
  TcpAt t;
  if (!LocateTcp(ip, *len, &t) || *len < t.l3 + 20) return false;
  size_t l4 = static_cast<size_t>(ip[t.l3 + 12] >> 4) * 4;
  size_t end = t.l3 + l4;
  if (l4 < 20 || end > *len || end > t.ipEnd) return false;
  // IPv4 total length, or IPv6 payload length (the header checksum is left: nothing reads it).
  size_t field = t.addrLen == 4 ? end : l4;
  uint8_t* at = ip + (t.addrLen == 4 ? 2 : 4);
  at[0] = static_cast<uint8_t>(field >> 8);
  at[1] = static_cast<uint8_t>(field & 0xff);
  *len = end;
  return true;
}

bool ReadTcp(const uint8_t* ip, size_t len, TcpView* out) {
  TcpAt t;
  // A copy cut to copy_range is not read (the engine drops such packets as undecodable).
  if (!LocateTcp(ip, len, &t) || t.ipEnd > len) return false;
  size_t end = t.ipEnd;
  if (end < t.l3 + 20) return false;
  const uint8_t* tcp = ip + t.l3;
  size_t l4 = static_cast<size_t>(tcp[12] >> 4) * 4;
  if (l4 < 20 || t.l3 + l4 > end) return false;
  uint16_t sport = U16(tcp), dport = U16(tcp + 2);
  int cmp = std::memcmp(t.src, t.dst, t.addrLen);
  out->srcLow = cmp < 0 || (cmp == 0 && sport <= dport);
  out->key.clear();
  if (out->srcLow) {
    AppendEndpoint(&out->key, t.src, t.addrLen, sport);
    AppendEndpoint(&out->key, t.dst, t.addrLen, dport);
  } else {
    AppendEndpoint(&out->key, t.dst, t.addrLen, dport);
    AppendEndpoint(&out->key, t.src, t.addrLen, sport);
  }
  out->seq = Be32At(tcp + 4);
  out->ack = Be32At(tcp + 8);
  out->flags = tcp[13];
  out->ttl = t.ttl;
  out->src = t.src;
  out->dst = t.dst;
  out->addrLen = t.addrLen;
  out->tcp = tcp;
  out->payload = tcp + l4;
  out->payloadLen = end - t.l3 - l4;
  return true;
}

bool EndsAfterHello(const uint8_t* p, size_t n) {
  constexpr uint8_t kChangeCipherSpec = 0x14, kHandshake = 0x16, kClientHello = 1;
  size_t at = 0;
  while (at < n) {
    uint8_t type = p[at];
    if (type != kChangeCipherSpec && type != kHandshake) return true;
    if (at + 5 > n) return false;  // the header goes on in the next packet
    if (type == kHandshake) return at + 6 <= n && p[at + 5] != kClientHello;
    at += 5 + static_cast<size_t>(U16(p + at + 3));  // skip the ChangeCipherSpec record
  }
  return false;  // only ChangeCipherSpec so far
}

TcpOptionsSeen ReadTcpOptions(const TcpView& v) {
  TcpOptionsSeen o;
  const uint8_t* p = v.tcp + 20;
  size_t n = static_cast<size_t>(v.payload - p);
  size_t i = 0;
  while (i < n) {
    uint8_t kind = p[i];
    if (kind == 0) break;  // end of option list
    if (kind == 1) {       // no-operation
      i++;
      continue;
    }
    if (i + 1 >= n || p[i + 1] < 2 || i + p[i + 1] > n) {
      o.malformed = true;
      break;
    }
    uint8_t len = p[i + 1];
    if (kind == 8 && len == 10) {
      o.hasTs = true;
      o.tsVal = Be32At(p + i + 2);
    } else if (kind == 19 && len == 18) {
      o.md5 = true;
    }
    i += len;
  }
  return o;
}

bool TcpChecksumOk(const TcpView& v) {
  uint64_t sum = 0;
  for (size_t i = 0; i < v.addrLen; i += 2) sum += U16(v.src + i) + U16(v.dst + i);
  size_t tcpLen = static_cast<size_t>(v.payload - v.tcp) + v.payloadLen;
  sum += 6 + (tcpLen >> 16) + (tcpLen & 0xffff);  // pseudo-header: protocol and TCP length
  size_t i = 0;
  for (; i + 1 < tcpLen; i += 2) sum += U16(v.tcp + i);
  if (i < tcpLen) sum += static_cast<uint64_t>(v.tcp[i]) << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  return sum == 0xffff;
}

FakeChecks UnpackFakeChecks(const uint32_t* w) {
  return FakeChecks{w[0] != 0, static_cast<uint8_t>(w[1] > 255 ? 255 : w[1]), w[2] != 0, w[3], w[4] != 0, w[5], w[6],
                    w[7] != 0, w[8]};
}

bool PassesFakeChecks(const TcpView& v, uint32_t skbInfo, const FakeChecks& c) {
  if (c.verifyChecksum && (skbInfo & kSkbCsumNotReady) == 0 && !TcpChecksumOk(v)) return false;
  if (v.payloadLen > c.maxPayload || v.ttl < c.minTtl) return false;
  TcpOptionsSeen o = ReadTcpOptions(v);
  if (o.malformed || o.md5) return false;
  if (c.hasTsMin && o.hasTs && static_cast<int32_t>(o.tsVal - c.tsMin) < 0) return false;
  if (c.hasAckMin && static_cast<int32_t>(v.ack - c.ackMin) < 0) return false;
  if (c.hasAckAbove && ((v.flags & 0x10) == 0 ||  // no ACK flag
                         static_cast<int32_t>(v.ack - c.ackAbove) <= 0)) return false;
  return true;
}

}  // namespace fg
