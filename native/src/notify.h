// sd_notify for Type=notify services (READY=1, WATCHDOG=1, STOPPING=1).
#pragma once

#include <napi.h>

namespace fg {

/** notify(socketPath: string, message: string): sends one datagram; throws ERR_NOTIFY / ERR_ARG. */
Napi::Value Notify(const Napi::CallbackInfo& info);

}  // namespace fg
