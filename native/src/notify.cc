// sd_notify without libsystemd: one datagram on the AF_UNIX socket named by $NOTIFY_SOCKET
// (a path, or an abstract name written with a leading '@'). Node has no Unix datagram sockets,
// which is why this small piece lives in the addon.
#include "notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "errors.h"

namespace fg {

Napi::Value Notify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) {
    ThrowCodeError(env, "ERR_ARG", 0, "notify(socketPath, message) takes two strings");
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  std::string msg = info[1].As<Napi::String>().Utf8Value();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    ThrowCodeError(env, "ERR_ARG", 0, "bad NOTIFY_SOCKET path");
    return env.Undefined();
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ThrowCodeError(env, "ERR_NOTIFY", errno, std::string("socket: ") + std::strerror(errno));
    return env.Undefined();
  }
  ssize_t n = sendto(fd, msg.data(), msg.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&addr), len);
  int saved = errno;
  close(fd);
  if (n < 0) {
    ThrowCodeError(env, "ERR_NOTIFY", saved, std::string("sendto: ") + std::strerror(saved));
    return env.Undefined();
  }
  return env.Undefined();
}

}  // namespace fg
