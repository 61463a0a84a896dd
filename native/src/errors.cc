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

bool ReadUint32Words(const Napi::Value& v, size_t n, const uint32_t** out) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array) return false;
  Napi::Uint32Array a = v.As<Napi::Uint32Array>();
  if (a.ElementLength() < n) return false;
  *out = a.Data();
  return true;
}

}  // namespace fg
