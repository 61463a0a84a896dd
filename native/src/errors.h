// Errors that cross into JS: plain Error objects with `code` (stable string) and `errno`.
// src/capture/queue.ts rewraps them as FlowgateError. Also the argument check they mostly follow.
#pragma once

#include <napi.h>

#include <string>

namespace fg {

/** Builds an Error with .code and, when err != 0, .errno. */
Napi::Error MakeCodeError(Napi::Env env, const char* code, int err, const std::string& message);

/** Builds and throws it (the addon is built without C++ exceptions: return right after). */
void ThrowCodeError(Napi::Env env, const char* code, int err, const std::string& message);

/** Reads a JS number that is a whole uint32 into *out; false (nothing thrown) otherwise. */
bool ReadUint32(const Napi::Value& v, uint32_t* out);

/** Points *out at a Uint32Array's words when `v` is one of at least `n`; false (nothing thrown) otherwise. */
bool ReadUint32Words(const Napi::Value& v, size_t n, const uint32_t** out);

}  // namespace fg
