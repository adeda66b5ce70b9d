// The instance table both AF_XDP pools run frames through (the in-process pool, pool.h, and
// the NF worker process, worker_main.cc): which native NF runs as which instance, with
// which maps, and every instance's action table.
//
// Contract: a table is immutable once published; threads read it without a lock. It owns
// (through `owners`) the instances it references, so a library is dlclosed and its fds
// closed only when the last table naming it is freed, which the pools do only after no
// thread can still hold that table.
#pragma once

#include <dlfcn.h>
#include <unistd.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

extern "C" {
#include "galette_abi.h"
}
#include "map_view.h"

namespace galette {

using NfPacketFn = uint32_t (*)(galette_pkt*, const int*);
using NfPacketMappedFn = uint32_t (*)(galette_pkt*, const galette_nf_map*);

// One NF instance as threads run it: the fds it was given (owned: closed on destruction)
// and a dlopen reference to its library.
struct LoadedInstance {
  uint32_t id = 0;
  std::string library;
  int actions_fd = -1;  // the in-process pool re-reads action tables; the worker gets copies
  std::vector<int> map_fds;
  std::vector<galette_nf_map> maps;  // one per map fd: mmapable arrays mapped
  void* handle = nullptr;
  NfPacketFn packet = nullptr;
  NfPacketMappedFn packet_mapped = nullptr;

  LoadedInstance() = default;
  LoadedInstance(const LoadedInstance&) = delete;
  LoadedInstance& operator=(const LoadedInstance&) = delete;
  ~LoadedInstance() {
    if (actions_fd >= 0) close(actions_fd);
    for (const galette_nf_map& m : maps) UnviewMap(m);
    for (int fd : map_fds) close(fd);
    if (handle) dlclose(handle);
  }
  // Never NULL, even for an NF without maps.
  const int* MapFds() const {
    static const int kNoMaps[1] = {-1};
    return map_fds.empty() ? kNoMaps : map_fds.data();
  }
  const galette_nf_map* Maps() const {
    static const galette_nf_map kNoMaps[1] = {{-1, 0, 0, 0, nullptr}};
    return maps.empty() ? kNoMaps : maps.data();
  }
};

struct NfEntry {
  NfPacketFn packet = nullptr;
  const int* map_fds = nullptr;
  NfPacketMappedFn packet_mapped = nullptr;  // preferred when the library exports it
  const galette_nf_map* maps = nullptr;
};

// What threads read per frame. Immutable once published.
struct InstanceTable {
  uint64_t generation = 0;
  bool known[GALETTE_MAX_INSTANCES] = {};
  galette_action actions[GALETTE_MAX_INSTANCES][GALETTE_MAX_ACTIONS] = {};
  NfEntry nf[GALETTE_MAX_INSTANCES] = {};
  // Keeps libraries and fds alive while this table may be in use (never read by threads).
  std::vector<std::shared_ptr<LoadedInstance>> owners;
};

}  // namespace galette
