#include "errors.h"

namespace fg {

Napi::Error MakeCodeError(Napi::Env env, const char* code, int err, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  if (err != 0) e.Set("errno", Napi::Number::New(env, err));
  return e;
}

void ThrowCodeError(Napi::Env env, const char* code, int err, const std::string& message) {
  MakeCodeError(env, code, err, message).ThrowAsJavaScriptException();
}

bool ReadUint32(const Napi::Value& v, uint32_t* out) {
  if (!v.IsNumber()) return false;
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 4294967295.0) || d != static_cast<double>(static_cast<uint64_t>(d))) return false;
  *out = static_cast<uint32_t>(d);
  return true;
}

}  // namespace fg
