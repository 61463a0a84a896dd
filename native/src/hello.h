// The reader thread's reading of a connection's first client packet: a whole, plain ClientHello,
// and the one name it asks for. Pure functions over bytes: no sockets, no N-API.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace fg {

/**
 * True when `p`/`n` (a first data packet's TCP payload) is exactly one TLS handshake record
 * holding exactly one ClientHello (at most `maxHelloBytes` of body), which the engine's analyzer
 * (src/protocols/tls/) reads as valid with one server name and no ECH, that name already in the
 * form the policy compares (lowercase DNS labels of [a-z0-9_-], no trailing dot, not numeric at
 * the end): then `*name` is that name. False for anything else (a hello over several records or
 * packets, anything after it, a repeated extension, an IP literal...), which then takes the
 * engine's path: false never means "bad", only "not this simple".
 */
bool SimpleHelloName(const uint8_t* p, size_t n, uint32_t maxHelloBytes, std::string* name);

/**
 * For a packet SimpleHelloName read: true when the only bytes of it a server puts in its answer
 * (the legacy session id and its length, which a HelloRetryRequest echoes at offset 43 of its
 * record) hold no 0x16, the byte a TLS handshake record starts with. The rules end a hello's
 * inspection on the server's first data packet when it starts a ServerHello; a later segment of a
 * HelloRetryRequest (its first lost before the gateway, the client having asked for small
 * segments) could otherwise start inside the echo and look like one (src/cli/rules.ts, answerRules).
 */
bool EchoCannotPassForServerHello(const uint8_t* p, size_t n);

}  // namespace fg
