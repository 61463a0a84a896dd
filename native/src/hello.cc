// A first packet's plain ClientHello, read as src/protocols/tls/ reads it. See hello.h and
// native/README.md ("The hello").
#include "hello.h"

namespace fg {
namespace {

constexpr uint8_t kHandshake = 22;
constexpr uint8_t kClientHello = 1;
constexpr size_t kMaxRecord = 16384 + 2048;  // MAX_RECORD_LENGTH
constexpr size_t kMaxSessionId = 32;
constexpr size_t kMaxName = 253;             // MAX_NAME_LENGTH
constexpr size_t kMaxExtensions = 64;        // more is not plain (browsers send about 20)

// Extension code points the analyzer reads (src/protocols/tls/types.ts Ext).
constexpr uint16_t kServerName = 0, kGroups = 10, kPointFormats = 11, kSigAlgs = 13, kAlpn = 16,
                   kEarlyData = 42, kVersions = 43, kKeyShare = 51, kEch = 0xfe0d;

uint32_t U16(const uint8_t* p) { return (static_cast<uint32_t>(p[0]) << 8) | p[1]; }

// readU16List: a length prefix of `prefix` bytes that fills the data exactly, even.
bool U16ListOk(const uint8_t* d, size_t n, size_t prefix) {
  if (n < prefix) return false;
  size_t len = prefix == 1 ? d[0] : U16(d);
  return len == n - prefix && len % 2 == 0;
}

// readAlpn: a u16 list length filling the data, then u8-prefixed names inside it.
bool AlpnOk(const uint8_t* d, size_t n) {
  if (n < 2 || U16(d) != n - 2) return false;
  for (size_t at = 2; at < n;) {
    size_t len = d[at++];
    if (at + len > n) return false;
    at += len;
  }
  return true;
}

// readKeyShareGroups: a u16 list length filling the data, then (group, u16-prefixed key) entries.
bool KeyShareOk(const uint8_t* d, size_t n) {
  if (n < 2 || U16(d) != n - 2) return false;
  for (size_t at = 2; at < n;) {
    if (at + 4 > n) return false;
    size_t len = U16(d + at + 2);
    at += 4;
    if (at + len > n) return false;
    at += len;
  }
  return true;
}

// One server_name list holding one non-empty host_name entry (anything else the analyzer calls
// malformed or ambiguous): its name.
bool OneHostName(const uint8_t* d, size_t n, const uint8_t** name, size_t* len) {
  if (n < 5 || U16(d) != n - 2 || d[2] != 0) return false;
  *len = U16(d + 3);
  *name = d + 5;
  return *len > 0 && 5 + *len == n;
}

bool LabelChar(uint8_t c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'; }

// A name normalizeName leaves as it is, of kind dns, that lookupName takes as it is and that
// may match suffix entries: lowercase labels of 1-63 [a-z0-9_-] not starting or ending with '-',
// no trailing dot, at most 253 bytes, and a last label that is not all digits (that, and IPv4
// literals, match exactly only).
bool CanonicalName(const uint8_t* s, size_t n) {
  if (n == 0 || n > kMaxName) return false;
  size_t start = 0;
  bool digitsOnly = true;
  for (size_t i = 0; i <= n; i++) {
    if (i == n || s[i] == '.') {
      size_t len = i - start;
      if (len == 0 || len > 63 || s[start] == '-' || s[i - 1] == '-') return false;
      start = i + 1;
      if (i < n) digitsOnly = true;
      continue;
    }
    if (!LabelChar(s[i])) return false;
    if (s[i] < '0' || s[i] > '9') digitsOnly = false;
  }
  return !digitsOnly;
}

}  // namespace

bool SimpleHelloName(const uint8_t* p, size_t n, uint32_t maxHelloBytes, std::string* name) {
  // The record: one handshake record filling the packet, holding the handshake message exactly.
  if (n < 9 || p[0] != kHandshake) return false;
  size_t record = U16(p + 3);
  if (record > kMaxRecord || 5 + record != n || p[5] != kClientHello) return false;
  size_t len = (static_cast<size_t>(p[6]) << 16) | (static_cast<size_t>(p[7]) << 8) | p[8];
  if (len > maxHelloBytes || 4 + len != record) return false;
  // The body, as parseClientHelloBody walks it.
  const uint8_t* b = p + 9;
  size_t at = 2 + 32;
  if (at + 1 > len) return false;
  size_t sid = b[at++];
  if (sid > kMaxSessionId || at + sid > len) return false;
  at += sid;
  if (at + 2 > len) return false;
  size_t suites = U16(b + at);
  at += 2;
  if (suites % 2 != 0 || at + suites > len) return false;
  at += suites;
  if (at + 1 > len) return false;
  size_t compression = b[at++];
  if (at + compression > len) return false;
  at += compression;
  // No extensions: no name.
  if (at + 2 > len) return false;
  size_t extLen = U16(b + at);
  at += 2;
  if (at + extLen != len) return false;
  // The extensions: each type once (the analyzer reads a repeat's first copy only; here a repeat
  // is simply not plain), the ones the analyzer checks well formed, no ECH, no early data, one name.
  uint16_t seen[kMaxExtensions];
  size_t count = 0;
  const uint8_t* host = nullptr;
  size_t hostLen = 0;
  while (at < len) {
    if (at + 4 > len) return false;
    uint16_t type = static_cast<uint16_t>(U16(b + at));
    size_t dlen = U16(b + at + 2);
    at += 4;
    if (at + dlen > len) return false;
    const uint8_t* d = b + at;
    at += dlen;
    if (count == kMaxExtensions) return false;
    for (size_t i = 0; i < count; i++) {
      if (seen[i] == type) return false;
    }
    seen[count++] = type;
    bool ok = true;
    switch (type) {
      case kServerName: ok = OneHostName(d, dlen, &host, &hostLen); break;
      case kAlpn: ok = AlpnOk(d, dlen); break;
      case kVersions: ok = U16ListOk(d, dlen, 1); break;
      case kGroups:
      case kSigAlgs: ok = U16ListOk(d, dlen, 2); break;
      case kPointFormats: ok = dlen >= 1 && d[0] == dlen - 1; break;
      case kKeyShare: ok = KeyShareOk(d, dlen); break;
      case kEch: ok = false; break;
      // Early data (0-RTT) keeps the connection's records under the analyzer's reading (src/protocols/dispatch.ts).
      case kEarlyData: ok = false; break;
      default: break;
    }
    if (!ok) return false;
  }
  if (host == nullptr || !CanonicalName(host, hostLen)) return false;
  name->assign(reinterpret_cast<const char*>(host), hostLen);
  return true;
}

bool EchoCannotPassForServerHello(const uint8_t* p, size_t n) {
  constexpr size_t kSessionIdAt = 5 + 4 + 2 + 32;  // record and handshake headers, version, random
  if (n <= kSessionIdAt) return false;
  size_t sid = p[kSessionIdAt];
  if (kSessionIdAt + 1 + sid > n) return false;
  for (size_t i = kSessionIdAt; i <= kSessionIdAt + sid; i++) {
    if (p[i] == kHandshake) return false;
  }
  return true;
}

}  // namespace fg
