// Entry point of the galette_xdp addon: registers the object, map, XDP and worker-pool calls.
#include <dlfcn.h>
#include <sys/resource.h>

#include "common.h"
#include "exports.h"

namespace galette {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // BPF memory is charged to the cgroup on current kernels; a raised limit only matters
  // on old ones and is harmless here.
  rlimit rl{RLIM_INFINITY, RLIM_INFINITY};
  setrlimit(RLIMIT_MEMLOCK, &rl);
  // Node loads addons RTLD_LOCAL, so libbpf (our dependency) is invisible to libraries we
  // dlopen later. Native NF libraries leave bpf_map_*_elem undefined and expect the worker
  // process to provide them: promote libbpf to the global namespace.
  void* libbpf = dlopen("libbpf.so.1", RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
  exports.Set("libbpfGlobal", Napi::Boolean::New(env, libbpf != nullptr));
  InstallLibbpfPrinter();
  RegisterObject(env, exports);
  RegisterMaps(env, exports);
  RegisterXdp(env, exports);
  RegisterPool(env, exports);
  RegisterWorkerPool(env, exports);
  RegisterTrace(env, exports);
  return exports;
}

}  // namespace galette

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return galette::Init(env, exports); }

NODE_API_MODULE(galette_xdp, InitAddon)
