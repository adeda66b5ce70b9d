// XDP attach/detach/query through libbpf's netlink API (no libxdp dispatcher: it needs
// freplace, which this kernel refuses). Interfaces may live in another network namespace.
#include <linux/if_link.h>

#include "common.h"

extern "C" {
#include <bpf/bpf.h>
}
#include "exports.h"

extern "C" {
#include <bpf/libbpf.h>
}

namespace galette {
namespace {

// The interface argument is an ifindex (number) or a name resolved inside the namespace.
int ResolveIf(const Napi::CallbackInfo& info, size_t i) {
  if (info[i].IsNumber()) return info[i].As<Napi::Number>().Int32Value();
  return IfIndex(info.Env(), ArgString(info, i, "interface"));
}

std::string IfLabel(const Napi::CallbackInfo& info, size_t i, int ifindex) {
  std::string label = info[i].IsString() ? info[i].As<Napi::String>().Utf8Value() + " (ifindex " : "ifindex ";
  label += std::to_string(ifindex);
  if (info[i].IsString()) label += ")";
  return label;
}

// With old_fd >= 0, the kernel attaches or detaches only while that program is attached.
void ExpectAttached(int old_fd, bpf_xdp_attach_opts* opts, uint32_t* flags) {
  if (old_fd < 0) return;
  opts->old_prog_fd = old_fd;
  *flags |= XDP_FLAGS_REPLACE;
}

// xdpAttach(netns, iface, progFd, flags, expectedOldFd): flags are XDP_FLAGS_*; with
// expectedOldFd >= 0 the kernel swaps atomically only if that program is still attached.
Napi::Value Attach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  NetnsScope ns(env, ArgString(info, 0, "netns"));
  int ifindex = ResolveIf(info, 1);
  int prog_fd = ArgInt(info, 2, "program fd");
  uint32_t flags = ArgU32(info, 3, "flags");
  int old_fd = ArgInt(info, 4, "expected old program fd");
  LIBBPF_OPTS(bpf_xdp_attach_opts, opts);
  ExpectAttached(old_fd, &opts, &flags);
  LibbpfCapture capture;  // netlink's extended ack ("Active program does not match expected")
  int err = bpf_xdp_attach(ifindex, prog_fd, flags, &opts);
  if (err)
    ThrowErrno(env, err,
               "attach XDP program fd " + std::to_string(prog_fd) + " to " + IfLabel(info, 1, ifindex) + " (flags " +
                   std::to_string(flags) + (old_fd >= 0 ? ", expected old fd " + std::to_string(old_fd) : "") + ")",
               {{"ifindex", std::to_string(ifindex)}}, capture.Text());
  return Napi::Number::New(env, ifindex);
}

// xdpDetach(netns, iface, flags, expectedOldFd)
Napi::Value Detach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  NetnsScope ns(env, ArgString(info, 0, "netns"));
  int ifindex = ResolveIf(info, 1);
  uint32_t flags = ArgU32(info, 2, "flags");
  int old_fd = ArgInt(info, 3, "expected old program fd");
  LIBBPF_OPTS(bpf_xdp_attach_opts, opts);
  ExpectAttached(old_fd, &opts, &flags);
  LibbpfCapture capture;
  int err = bpf_xdp_detach(ifindex, flags, &opts);
  if (err)
    ThrowErrno(env, err, "detach XDP from " + IfLabel(info, 1, ifindex), {{"ifindex", std::to_string(ifindex)}},
               capture.Text());
  return env.Undefined();
}

// xdpQuery(netns, iface) -> {ifindex, progId, drvProgId, skbProgId, hwProgId, attachMode}
Napi::Value Query(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  NetnsScope ns(env, ArgString(info, 0, "netns"));
  int ifindex = ResolveIf(info, 1);
  LIBBPF_OPTS(bpf_xdp_query_opts, q);
  LibbpfCapture capture;
  int err = bpf_xdp_query(ifindex, 0, &q);
  if (err)
    ThrowErrno(env, err, "query XDP on " + IfLabel(info, 1, ifindex), {{"ifindex", std::to_string(ifindex)}},
               capture.Text());
  Napi::Object o = Napi::Object::New(env);
  o.Set("ifindex", ifindex);
  o.Set("progId", q.prog_id);
  o.Set("drvProgId", q.drv_prog_id);
  o.Set("skbProgId", q.skb_prog_id);
  o.Set("hwProgId", q.hw_prog_id);
  o.Set("attachMode", q.attach_mode);
  return o;
}

Napi::Value IfIndexOf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  NetnsScope ns(env, ArgString(info, 0, "netns"));
  return Napi::Number::New(env, IfIndex(env, ArgString(info, 1, "interface")));
}

// devmapSet(netns, mapFd, key, ifindex): the kernel resolves a DEVMAP value (an ifindex)
// in the caller's network namespace, so the entry is written from inside the ports' one.
Napi::Value DevmapSet(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  NetnsScope ns(env, ArgString(info, 0, "netns"));
  int fd = static_cast<int>(ArgU32(info, 1, "mapFd"));
  uint32_t key = ArgU32(info, 2, "key");
  uint32_t value = ArgU32(info, 3, "ifindex");
  if (bpf_map_update_elem(fd, &key, &value, 0) != 0)
    ThrowErrno(env, errno, "set DEVMAP entry " + std::to_string(key) + " -> ifindex " + std::to_string(value),
               {{"ifindex", std::to_string(value)}});
  return env.Undefined();
}

}  // namespace

void RegisterXdp(Napi::Env env, Napi::Object exports) {
  exports.Set("xdpAttach", Napi::Function::New(env, Attach));
  exports.Set("xdpDetach", Napi::Function::New(env, Detach));
  exports.Set("xdpQuery", Napi::Function::New(env, Query));
  exports.Set("ifIndex", Napi::Function::New(env, IfIndexOf));
  exports.Set("devmapSet", Napi::Function::New(env, DevmapSet));
}

}  // namespace galette
