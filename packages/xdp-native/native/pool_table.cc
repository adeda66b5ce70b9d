// The in-process pool's instance tables: loading instances (checked on the JS thread),
// building, publishing and retiring tables (see pool.h).
#include <fcntl.h>

#include "pool.h"
#include "xsk_common.h"

extern "C" {
#include <bpf/bpf.h>
}

namespace galette {
namespace inproc {
namespace {

// A native NF library that cannot be used: the error names the instance and the path,
// and carries errno/code plus `instance` and `library` so callers can tell it apart.
[[noreturn]] void ThrowLibraryError(Napi::Env env, int err, const InstanceConfig& inst, const std::string& why) {
  Napi::Error e =
      Napi::Error::New(env, "NF instance " + std::to_string(inst.id) + " library " + inst.library + ": " + why);
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("code", Napi::String::New(env, ErrnoName(err)));
  e.Set("instance", Napi::Number::New(env, inst.id));
  e.Set("library", Napi::String::New(env, inst.library));
  throw e;
}

int DupFd(Napi::Env env, int fd, const std::string& what) {
  int dup = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (dup < 0) ThrowErrno(env, errno, "duplicate " + what + " (fd " + std::to_string(fd) + ")");
  return dup;
}

// Checks one instance's maps and loads its library, on the calling (JS) thread, so every
// problem is reported before the workers see anything. Throws; nothing leaks on a throw.
std::shared_ptr<LoadedInstance> LoadInstance(Napi::Env env, const InstanceConfig& inst) {
  auto li = std::make_shared<LoadedInstance>();
  li->id = inst.id;
  li->library = inst.library;
  std::string table = "action table of instance " + std::to_string(inst.id);
  bpf_map_info a = MapInfo(env, inst.actions_fd, table);
  if (a.type != BPF_MAP_TYPE_ARRAY || a.key_size != 4 || a.value_size != sizeof(galette_action))
    ThrowErrno(env, EINVAL,
               table + " must be an ARRAY u32 -> struct galette_action (8 bytes), got type " + std::to_string(a.type) +
                   " key " + std::to_string(a.key_size) + " value " + std::to_string(a.value_size));
  li->actions_fd = DupFd(env, inst.actions_fd, table);
  for (size_t j = 0; j < inst.map_fds.size(); j++) {
    std::string what = "map " + std::to_string(j) + " of instance " + std::to_string(inst.id);
    bpf_map_info mi = MapInfo(env, inst.map_fds[j], what);
    li->map_fds.push_back(DupFd(env, inst.map_fds[j], what));
    li->maps.push_back(ViewMap(li->map_fds.back(), mi.type, mi.map_flags, mi.value_size, mi.max_entries));
  }
  if (inst.library.empty()) return li;
  dlerror();
  li->handle = dlopen(inst.library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!li->handle) {
    const char* why = dlerror();
    ThrowLibraryError(env, ENOENT, inst, std::string("dlopen failed: ") + (why ? why : "unknown error"));
  }
  auto version = reinterpret_cast<uint32_t (*)()>(dlsym(li->handle, "galette_nf_abi_version"));
  if (!version) ThrowLibraryError(env, ENOENT, inst, "does not export galette_nf_abi_version");
  uint32_t v = version();
  if (v != GALETTE_ABI_VERSION)
    ThrowLibraryError(
        env, EPROTO, inst,
        "ABI version " + std::to_string(v) + ", this worker speaks " + std::to_string(GALETTE_ABI_VERSION));
  li->packet = reinterpret_cast<NfPacketFn>(dlsym(li->handle, "galette_nf_packet"));
  if (!li->packet) ThrowLibraryError(env, ENOENT, inst, "does not export galette_nf_packet");
  li->packet_mapped = reinterpret_cast<NfPacketMappedFn>(dlsym(li->handle, "galette_nf_packet_mapped"));
  return li;
}

}  // namespace

std::vector<std::shared_ptr<LoadedInstance>> LoadInstances(Napi::Env env, const std::vector<InstanceConfig>& configs) {
  std::vector<std::shared_ptr<LoadedInstance>> out;
  for (const InstanceConfig& c : configs) out.push_back(LoadInstance(env, c));
  return out;
}

// Builds a table over `instances`, reading every action table now (JS thread).
std::unique_ptr<InstanceTable> BuildTable(Napi::Env env, const std::vector<std::shared_ptr<LoadedInstance>>& instances,
                                          uint64_t generation) {
  auto t = std::make_unique<InstanceTable>();
  t->generation = generation;
  t->owners = instances;
  for (const auto& inst : instances) {
    t->known[inst->id] = true;
    if (inst->packet) t->nf[inst->id] = NfEntry{inst->packet, inst->MapFds(), inst->packet_mapped, inst->Maps()};
    for (uint32_t v = 0; v < GALETTE_MAX_ACTIONS; v++) {
      galette_action a{};
      if (bpf_map_lookup_elem(inst->actions_fd, &v, &a) != 0) {
        // A table with fewer entries than GALETTE_MAX_ACTIONS: missing variants abort, as in XDP.
        if (errno == ENOENT) continue;
        ThrowErrno(
            env, errno,
            "read action table of NF instance " + std::to_string(inst->id) + " (variant " + std::to_string(v) + ")");
      }
      t->actions[inst->id][v] = a;
    }
  }
  return t;
}

// Frees retired tables no worker announces (all of them once the threads are joined).
// Dropping a table's owners is what dlcloses retired libraries and closes their fds.
void Reclaim(Pool* pool, bool all) {
  std::vector<InstanceTable*> keep;
  for (InstanceTable* t : pool->retired) {
    bool held = false;
    if (!all)
      for (auto& w : pool->workers) held = held || w->holding.load() == t;
    if (held)
      keep.push_back(t);
    else
      delete t;
  }
  pool->retired.swap(keep);
}

// Makes `table` the one workers pick up from their next batch; its instance set becomes
// the pool's. The previous table is retired, not freed.
void Publish(Pool* pool, std::unique_ptr<InstanceTable> table) {
  pool->generation = table->generation;
  pool->instances = table->owners;
  pool->instance_ids.clear();
  for (const auto& inst : pool->instances) pool->instance_ids.push_back(inst->id);
  InstanceTable* old = pool->current.exchange(table.release());
  if (old) pool->retired.push_back(old);
  Reclaim(pool, false);
}

// True once no worker can be running a table older than `generation`.
bool Quiesced(Pool* pool, uint64_t generation) {
  Reclaim(pool, false);
  for (InstanceTable* t : pool->retired)
    if (t->generation < generation) return false;
  return true;
}

}  // namespace inproc
}  // namespace galette
