// Module entry: exports { Queue, notify } and, for tests, the pure packet readers the reader
// thread uses. Everything else is in queue.cc (socket and loop) and wire.cc (netlink framing).
#include <napi.h>

#include "errors.h"
#include "hello.h"
#include "notify.h"
#include "queue.h"
#include "wire.h"

namespace {

bool BytesArg(const Napi::CallbackInfo& info, const uint8_t** p, size_t* n) {
  if (info.Length() < 1 || !info[0].IsTypedArray() ||
      info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    fg::ThrowCodeError(info.Env(), "ERR_ARG", 0, "expected a Uint8Array");
    return false;
  }
  Napi::Uint8Array a = info[0].As<Napi::Uint8Array>();
  *p = a.Data();
  *n = a.ElementLength();
  return true;
}

// endsAfterHello(bytes): fg::EndsAfterHello, for tests that hold it against the JavaScript analyzer.
Napi::Value EndsAfterHello(const Napi::CallbackInfo& info) {
  const uint8_t* p;
  size_t n;
  if (!BytesArg(info, &p, &n)) return info.Env().Undefined();
  return Napi::Boolean::New(info.Env(), fg::EndsAfterHello(p, n));
}

// simpleHelloName(bytes, maxHelloBytes): fg::SimpleHelloName's name, or null; for tests that
// hold it against the JavaScript analyzer.
Napi::Value SimpleHelloName(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const uint8_t* p;
  size_t n;
  uint32_t max;
  if (!BytesArg(info, &p, &n)) return env.Undefined();
  if (info.Length() < 2 || !fg::ReadUint32(info[1], &max)) {
    fg::ThrowCodeError(env, "ERR_ARG", 0, "simpleHelloName(bytes: Uint8Array, maxHelloBytes: uint32)");
    return env.Undefined();
  }
  std::string name;
  if (!fg::SimpleHelloName(p, n, max, &name)) return env.Null();
  return Napi::String::New(env, name);
}

// echoCannotPassForServerHello(bytes): fg::EchoCannotPassForServerHello, for tests.
Napi::Value EchoCannotPass(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const uint8_t* p;
  size_t n;
  if (!BytesArg(info, &p, &n)) return env.Undefined();
  return Napi::Boolean::New(env, fg::EchoCannotPassForServerHello(p, n));
}

// readTcp(packet): fg::ReadTcp as { key (its UTF-16 units), srcLow, seq, ack, flags, ttl,
// payloadLength, checksumOk, options: { malformed, hasTs, tsVal, md5 } }, or null.
Napi::Value ReadTcp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const uint8_t* p;
  size_t n;
  if (!BytesArg(info, &p, &n)) return env.Undefined();
  fg::TcpView v;
  if (!fg::ReadTcp(p, n, &v)) return env.Null();
  Napi::Object o = Napi::Object::New(env);
  Napi::Uint16Array key = Napi::Uint16Array::New(env, v.key.size());
  for (size_t i = 0; i < v.key.size(); i++) key[i] = v.key[i];
  o.Set("key", key);
  o.Set("srcLow", Napi::Boolean::New(env, v.srcLow));
  o.Set("seq", Napi::Number::New(env, v.seq));
  o.Set("flags", Napi::Number::New(env, v.flags));
  o.Set("payloadLength", Napi::Number::New(env, static_cast<double>(v.payloadLen)));
  o.Set("ack", Napi::Number::New(env, v.ack));
  o.Set("ttl", Napi::Number::New(env, v.ttl));
  o.Set("checksumOk", Napi::Boolean::New(env, fg::TcpChecksumOk(v)));
  fg::TcpOptionsSeen opts = fg::ReadTcpOptions(v);
  Napi::Object oo = Napi::Object::New(env);
  oo.Set("malformed", Napi::Boolean::New(env, opts.malformed));
  oo.Set("hasTs", Napi::Boolean::New(env, opts.hasTs));
  oo.Set("tsVal", Napi::Number::New(env, opts.tsVal));
  oo.Set("md5", Napi::Boolean::New(env, opts.md5));
  o.Set("options", oo);
  return o;
}

// passesFakeChecks(packet, skbInfo, checks: Uint32Array packed as fg::FakeChecks): fg::PassesFakeChecks,
// for tests that hold it against the engine's discardReason; null when ReadTcp cannot read the packet.
Napi::Value PassesFakeChecks(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const uint8_t* p;
  size_t n;
  uint32_t skbInfo;
  const uint32_t* checks;
  if (!BytesArg(info, &p, &n)) return env.Undefined();
  if (info.Length() < 3 || !fg::ReadUint32(info[1], &skbInfo) || !fg::ReadUint32Words(info[2], fg::kFakeCheckWords, &checks)) {
    fg::ThrowCodeError(env, "ERR_ARG", 0, "passesFakeChecks(packet: Uint8Array, skbInfo: uint32, checks: Uint32Array)");
    return env.Undefined();
  }
  fg::TcpView v;
  if (!fg::ReadTcp(p, n, &v)) return env.Null();
  return Napi::Boolean::New(env, fg::PassesFakeChecks(v, skbInfo, fg::UnpackFakeChecks(checks)));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Queue", fg::Queue::Init(env));
  exports.Set("notify", Napi::Function::New(env, fg::Notify, "notify"));
  exports.Set("endsAfterHello", Napi::Function::New(env, EndsAfterHello, "endsAfterHello"));
  exports.Set("simpleHelloName", Napi::Function::New(env, SimpleHelloName, "simpleHelloName"));
  exports.Set("echoCannotPassForServerHello", Napi::Function::New(env, EchoCannotPass, "echoCannotPassForServerHello"));
  exports.Set("readTcp", Napi::Function::New(env, ReadTcp, "readTcp"));
  exports.Set("passesFakeChecks", Napi::Function::New(env, PassesFakeChecks, "passesFakeChecks"));
  exports.Set("abi", Napi::Number::New(env, 4));  // bumped when the JS-facing shape changes
  return exports;
}

}  // namespace

NODE_API_MODULE(flowgate_nfqueue, Init)
