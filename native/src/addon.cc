// Module entry: exports { Queue, notify }. Everything else is in queue.cc (socket and loop) and
// wire.cc (netlink framing).
#include <napi.h>

#include "notify.h"
#include "queue.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Queue", fg::Queue::Init(env));
  exports.Set("notify", Napi::Function::New(env, fg::Notify, "notify"));
  exports.Set("abi", Napi::Number::New(env, 1));  // bumped when the JS-facing shape changes
  return exports;
}

}  // namespace

NODE_API_MODULE(flowgate_nfqueue, Init)
