#include "common.h"

#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>

extern "C" {
#include <bpf/libbpf.h>
}

namespace galette {

// libbpf reports ELF/format problems with its own codes from 4000 (LIBBPF_ERRNO__START).
static const char* const kLibbpfCodes[] = {"LIBBPF_ERRNO__LIBELF", "LIBBPF_ERRNO__FORMAT",   "LIBBPF_ERRNO__KVERSION",
                                           "LIBBPF_ERRNO__ENDIAN", "LIBBPF_ERRNO__INTERNAL", "LIBBPF_ERRNO__RELOC",
                                           "LIBBPF_ERRNO__LOAD",   "LIBBPF_ERRNO__VERIFY",   "LIBBPF_ERRNO__PROG2BIG",
                                           "LIBBPF_ERRNO__KVER",   "LIBBPF_ERRNO__PROGTYPE", "LIBBPF_ERRNO__WRNGPID",
                                           "LIBBPF_ERRNO__INVSEQ", "LIBBPF_ERRNO__NLPARSE"};

static std::string Describe(int err) {
  if (err >= 4000 && err < 4000 + static_cast<int>(sizeof kLibbpfCodes / sizeof *kLibbpfCodes)) {
    char buf[256];
    libbpf_strerror(err, buf, sizeof buf);
    return buf;
  }
  return strerror(err);
}

std::string ErrnoName(int err) {
  if (err < 0) err = -err;
  if (err >= 4000 && err < 4000 + static_cast<int>(sizeof kLibbpfCodes / sizeof *kLibbpfCodes))
    return kLibbpfCodes[err - 4000];
  const char* name = strerrorname_np(err);
  return name ? std::string(name) : "E" + std::to_string(err);
}

Napi::Error ErrnoError(Napi::Env env, int err, const std::string& context, const Props& props,
                       const std::string& details) {
  if (err < 0) err = -err;
  std::string message = context + ": " + Describe(err) + " (" + ErrnoName(err) + ")";
  if (!details.empty()) message += "\n" + details;
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("errno", Napi::Number::New(env, err));
  error.Set("code", Napi::String::New(env, ErrnoName(err)));
  for (const auto& [key, value] : props) error.Set(key, Napi::String::New(env, value));
  return error;
}

void ThrowErrno(Napi::Env env, int err, const std::string& context, const Props& props, const std::string& details) {
  throw ErrnoError(env, err, context, props, details);
}

void ThrowType(Napi::Env env, const std::string& message) { throw Napi::TypeError::New(env, message); }

int32_t ArgInt(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsNumber()) ThrowType(info.Env(), std::string(name) + " must be a number");
  return info[i].As<Napi::Number>().Int32Value();
}

uint32_t ArgU32(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsNumber()) ThrowType(info.Env(), std::string(name) + " must be a number");
  double v = info[i].As<Napi::Number>().DoubleValue();
  if (v < 0 || v > 4294967295.0 || v != static_cast<double>(static_cast<uint64_t>(v)))
    ThrowType(info.Env(), std::string(name) + " must be an unsigned 32-bit integer, got " + std::to_string(v));
  return static_cast<uint32_t>(v);
}

std::string ArgString(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsString()) ThrowType(info.Env(), std::string(name) + " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

Napi::Buffer<uint8_t> ArgBuffer(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsBuffer()) ThrowType(info.Env(), std::string(name) + " must be a Buffer");
  return info[i].As<Napi::Buffer<uint8_t>>();
}

bool IsSet(const Napi::CallbackInfo& info, size_t i) {
  return info.Length() > i && !info[i].IsUndefined() && !info[i].IsNull();
}

NetnsScope::NetnsScope(Napi::Env env, const std::string& path) {
  if (path.empty()) return;
  int target = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (target < 0) ThrowErrno(env, errno, "open network namespace " + path, {{"netns", path}});
  original_ = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (original_ < 0) {
    int err = errno;
    close(target);
    ThrowErrno(env, err, "open current network namespace", {{"netns", path}});
  }
  if (setns(target, CLONE_NEWNET) != 0) {
    int err = errno;
    close(target);
    close(original_);
    original_ = -1;
    ThrowErrno(env, err, "enter network namespace " + path, {{"netns", path}});
  }
  close(target);
}

NetnsScope::~NetnsScope() {
  if (original_ < 0) return;
  // Returning to our own namespace cannot fail short of a kernel bug; if it did, later
  // calls on this thread would act in the wrong namespace, so say so loudly.
  if (setns(original_, CLONE_NEWNET) != 0)
    fprintf(stderr, "galette xdp-native: cannot return to the original network namespace: %s\n", strerror(errno));
  close(original_);
}

int IfIndex(Napi::Env env, const std::string& ifname) {
  unsigned idx = if_nametoindex(ifname.c_str());
  if (idx == 0) ThrowErrno(env, errno, "no interface named '" + ifname + "'", {{"ifname", ifname}});
  return static_cast<int>(idx);
}

static thread_local std::string* libbpf_sink = nullptr;

static int LibbpfPrint(enum libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char line[4096];
  int n = vsnprintf(line, sizeof line, format, args);
  if (libbpf_sink) {
    libbpf_sink->append(line);
    return n;
  }
  // Outside a captured call (e.g. a finaliser) warnings still reach stderr, as by default.
  return fputs(line, stderr);
}

void InstallLibbpfPrinter() { libbpf_set_print(LibbpfPrint); }

LibbpfCapture::LibbpfCapture() : previous_(libbpf_sink) { libbpf_sink = &text_; }
LibbpfCapture::~LibbpfCapture() { libbpf_sink = previous_; }

}  // namespace galette
