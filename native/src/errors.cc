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

}  // namespace fg
