// Netlink framing for the nfnetlink_queue subsystem: building config and verdict messages,
// and decoding packet messages. Pure functions over byte buffers: no sockets, no N-API.
//
// Every multi-byte field inside nfnetlink messages (struct members and attribute values) is
// big-endian; the netlink headers themselves (nlmsghdr, nlattr) are host order. Received
// messages may sit at any byte offset, so every read and write goes through memcpy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace fg {

/** Options of the single NFQNL_MSG_CONFIG message that binds a queue. */
struct BindConfig {
  uint16_t queue;       // nfgenmsg.res_id
  uint32_t maxLen;      // NFQA_CFG_QUEUE_MAXLEN, packets
  uint32_t copyRange;   // nfqnl_msg_config_params.copy_range, bytes
  bool gso;             // NFQA_CFG_F_GSO
  bool failOpen;        // NFQA_CFG_F_FAIL_OPEN
};

/** One packet decoded from an NFQNL_MSG_PACKET message; payload points into the message. */
struct PacketInfo {
  uint32_t id;          // nfqnl_msg_packet_hdr.packet_id
  uint16_t hwProtocol;  // nfqnl_msg_packet_hdr.hw_protocol, converted to host order
  uint8_t hook;         // nfqnl_msg_packet_hdr.hook
  uint32_t mark;        // NFQA_MARK
  uint32_t inDev;       // NFQA_IFINDEX_INDEV, 0 when absent
  uint32_t outDev;      // NFQA_IFINDEX_OUTDEV, 0 when absent
  uint32_t skbInfo;     // NFQA_SKB_INFO bits, 0 when absent
  uint32_t capLen;      // NFQA_CAP_LEN, or payloadLen when absent
  uint8_t* payload;     // NFQA_PAYLOAD data (may be null when the packet had none)
  uint32_t payloadLen;
  const uint8_t* prefix;  // NFLOG only: NFULA_PREFIX (the rule's --nflog-prefix, with its NUL), or null
  uint32_t prefixLen;
};

/** The --nflog-prefix of flowgate's handshake rules (src/cli/rules.ts HANDSHAKE_LOG_PREFIX). */
constexpr char kLogPrefix[] = "flowgate";
/** The prefix of the copy the rules send of a server's ServerHello ending a hello's inspection (src/cli/rules.ts). */
constexpr char kAnswerPrefix[] = "flowgate-answer";

/** True when a logged packet carries `prefix` (kLogPrefix, kAnswerPrefix): copies other rules send to the group do not. */
bool HasLogPrefix(const PacketInfo& pkt, const char* prefix);

/**
 * Cuts an IPv4 or IPv6 (no extension headers) TCP packet in ip[0, *len), maybe a copy cut short,
 * to its IP and TCP headers, rewriting the IP length field to match (not the IPv4 header
 * checksum, which the engine never reads): a copy of a packet whose payload is not wanted, only
 * its connection and sequence numbers. False when the headers are not all there.
 */
bool CutToHeaders(uint8_t* ip, size_t* len);

/** NFQA_SKB_INFO bit 0 (NFQA_SKB_CSUMNOTREADY): the checksum is not computed yet, so not checked. */
constexpr uint32_t kSkbCsumNotReady = 1;

/** What one netlink message in a received datagram turned out to be. */
enum class MsgKind {
  Packet,   // NFQNL_MSG_PACKET, decoded into PacketInfo
  Logged,   // NFULNL_MSG_PACKET (an NFLOG copy: no verdict), decoded into PacketInfo with id 0
  Ack,      // NLMSG_ERROR with error 0
  Error,    // NLMSG_ERROR with a negative errno (reported as a positive errno)
  Other,    // NLMSG_NOOP / NLMSG_DONE / NLMSG_OVERRUN / anything we do not use
  Bad,      // a packet message without NFQA_PACKET_HDR, or a short NLMSG_ERROR
};

/** Result of decoding one message: kind, plus seq and errno for acks and errors. */
struct MsgResult {
  MsgKind kind;
  uint32_t seq;        // nlmsghdr.nlmsg_seq of the request an ack/error answers
  int err;             // positive errno for MsgKind::Error
};

/** Size of the largest message builders below write, bytes. */
constexpr size_t kConfigMsgMax = 128;
/** Size of one verdict message with a mark attribute, bytes (without: kVerdictMsgMax - 8). */
constexpr size_t kVerdictMsgMax = 40;

/** Writes the bind message (NLM_F_ACK set) into buf; returns its length. */
size_t BuildBind(uint8_t* buf, const BindConfig& cfg, uint32_t seq);

/** Writes an UNBIND config message (no ack requested) into buf; returns its length. */
size_t BuildUnbind(uint8_t* buf, uint16_t queue, uint32_t seq);

/**
 * Writes the NFULNL_MSG_CONFIG message (NLM_F_ACK set) that binds NFLOG group `group`: copies of
 * up to copyRange bytes of each packet, each sent on its own at once (qthreshold 1).
 */
size_t BuildLogBind(uint8_t* buf, uint16_t group, uint32_t copyRange, uint32_t seq);

/** Writes the NFULNL_MSG_CONFIG message (no ack requested) that unbinds NFLOG group `group`. */
size_t BuildLogUnbind(uint8_t* buf, uint16_t group, uint32_t seq);

/** Appends one NFQNL_MSG_VERDICT message; returns its length (32, or 40 with a mark). */
size_t BuildVerdict(uint8_t* buf, uint16_t queue, uint32_t id, uint32_t verdict,
                    bool hasMark, uint32_t mark);

/**
 * Finds the message starting at byte off of a received datagram. Returns its nlmsg_len, or 0
 * when there is none left or it is malformed (length shorter than a header or past the end).
 * The next message starts at off + NLMSG_ALIGN(returned length).
 */
size_t MessageAt(const uint8_t* buf, size_t len, size_t off);

/** Decodes one message starting at msg (msgLen = its nlmsg_len), filling pkt for packets. */
MsgResult DecodeMessage(uint8_t* msg, size_t msgLen, PacketInfo* pkt);

/**
 * True for a TCP SYN or SYN-ACK with no data, no FIN and no RST, right behind an IPv4 header
 * (not a fragment) or the fixed IPv6 header (no extension headers): a handshake packet with
 * nothing in it to inspect. `ip`/`len` is the queued payload (possibly cut to copy_range);
 * lengths come from the headers, so a cut packet still answers correctly.
 */
bool IsBareHandshake(const uint8_t* ip, size_t len);

/** The parts of a TCP packet the after-hello check needs; payload points into the packet. */
struct TcpView {
  std::u16string key;      // the connection's key, as src/flow/key.ts flowKey builds it
  bool srcLow;             // the source is the key's first endpoint (srcIsLow)
  uint32_t seq;
  uint32_t ack;
  uint8_t flags;           // TCP flags byte (FIN 0x01 ... URG 0x20)
  uint8_t ttl;             // IPv4 TTL or IPv6 hop limit
  const uint8_t* src;      // the addresses, addrLen bytes each (for the checksum's pseudo-header)
  const uint8_t* dst;
  size_t addrLen;
  const uint8_t* tcp;      // the TCP header; its options run from tcp + 20 to payload
  const uint8_t* payload;
  size_t payloadLen;       // TCP payload bytes
};

/**
 * What the engine's discardReason checks of a client's next data segment (src/flow/tcp.ts
 * NextSegmentChecks), as the binding is handed them: the packed form is a Uint32Array of
 * kFakeCheckWords words in this order.
 */
struct FakeChecks {
  bool verifyChecksum;   // the TCP checksum must be right (unless the kernel has not computed it)
  uint8_t minTtl;        // the TTL (hop limit) may not be below the handshake's
  bool hasTsMin;         // a timestamp option may not go back before tsMin (PAWS)
  uint32_t tsMin;
  bool hasAckMin;        // the ACK may not be older than ackMin
  uint32_t ackMin;
  uint32_t maxPayload;   // longer packets take the engine's path (its held and retained limits)
  bool hasAckAbove;      // the ACK must be past ackAbove: the segment acknowledges server data
  uint32_t ackAbove;     // (after a hello: past where the server stood, see serverPosition in src/flow/tcp.ts)
};
constexpr size_t kFakeCheckWords = 9;

/** FakeChecks from its packed words (at least kFakeCheckWords). */
FakeChecks UnpackFakeChecks(const uint32_t* w);

/**
 * True when the server would keep `v` by the engine's checks for fakes (a bad checksum, a TTL
 * below the handshake's, an old timestamp or ACK) and it fits the engine's limits. Stricter where
 * the engine would need more: any MD5 option, or options it cannot walk, fail. `skbInfo`: the
 * packet's NFQA_SKB_INFO bits (bit 0: checksum not computed yet, not verified).
 */
bool PassesFakeChecks(const TcpView& v, uint32_t skbInfo, const FakeChecks& c);

/** The TCP options the engine's discard checks read (src/packet/decode.ts parseTcpOptions). */
struct TcpOptionsSeen {
  bool malformed = false;  // a length below 2 or past the header
  bool hasTs = false;      // timestamps (kind 8, length 10)
  uint32_t tsVal = 0;
  bool md5 = false;        // MD5 signature (kind 19, length 18)
};

/** Walks the options of `v` as parseTcpOptions does. */
TcpOptionsSeen ReadTcpOptions(const TcpView& v);

/** True when the TCP checksum of a packet ReadTcp read is right. */
bool TcpChecksumOk(const TcpView& v);

/**
 * Reads a whole IPv4 packet, or IPv6 packet without extension headers, carrying TCP: false for
 * anything else (other protocols, fragments, a copy cut short), which then takes the JavaScript
 * path.
 */
bool ReadTcp(const uint8_t* ip, size_t len, TcpView* out);

/**
 * True when client bytes that start at the record boundary after a first ClientHello end its
 * inspection, as src/protocols/dispatch.ts decides it: any ChangeCipherSpec records, complete in
 * `p`, then a record that is neither ChangeCipherSpec nor handshake, or a handshake record whose
 * first body byte is not client_hello (1). False whenever that cannot be told from `p` alone.
 */
bool EndsAfterHello(const uint8_t* p, size_t n);

}  // namespace fg
