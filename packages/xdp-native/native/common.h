// Shared helpers of the addon: JS errors with errno/code/context, argument readers, a
// scoped network-namespace switch, and capture of libbpf's own messages.
#pragma once

#include <napi.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace galette {

using Props = std::vector<std::pair<std::string, std::string>>;

// Symbolic errno name ("EPERM"), or "E<number>" when glibc has none.
std::string ErrnoName(int err);

// Builds "<context>: <strerror> (<CODE>)" and attaches errno, code and every prop, so callers
// can both read the message and branch on fields.
Napi::Error ErrnoError(Napi::Env env, int err, const std::string& context, const Props& props = {},
                       const std::string& details = "");
[[noreturn]] void ThrowErrno(Napi::Env env, int err, const std::string& context, const Props& props = {},
                             const std::string& details = "");
[[noreturn]] void ThrowType(Napi::Env env, const std::string& message);

// Argument readers that throw a TypeError naming the argument when it has the wrong type.
int32_t ArgInt(const Napi::CallbackInfo& info, size_t i, const char* name);
uint32_t ArgU32(const Napi::CallbackInfo& info, size_t i, const char* name);
std::string ArgString(const Napi::CallbackInfo& info, size_t i, const char* name);
Napi::Buffer<uint8_t> ArgBuffer(const Napi::CallbackInfo& info, size_t i, const char* name);
bool IsSet(const Napi::CallbackInfo& info, size_t i);

// Switches the calling thread into the network namespace at `path` (e.g. /run/netns/X)
// and back on destruction. Namespace switches are per thread, so this is safe on the JS
// thread between synchronous calls. An empty path does nothing.
class NetnsScope {
 public:
  NetnsScope(Napi::Env env, const std::string& path);
  ~NetnsScope();
  NetnsScope(const NetnsScope&) = delete;
  NetnsScope& operator=(const NetnsScope&) = delete;

 private:
  int original_ = -1;
};

// Resolves an interface name to its index in the current namespace, with a clear error.
int IfIndex(Napi::Env env, const std::string& ifname);

// While alive, libbpf's warnings on this thread are collected (they explain open/relocation
// failures that have no verifier log).
class LibbpfCapture {
 public:
  LibbpfCapture();
  ~LibbpfCapture();
  std::string Text() const { return text_; }

 private:
  std::string text_;
  std::string* previous_;
};

void InstallLibbpfPrinter();

}  // namespace galette
