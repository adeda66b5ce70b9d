// What both AF_XDP pools of the addon share (the in-process pool, pool.h, and the agent's
// half of the worker process pool, worker_pool.cc): their option readers, the checks of the
// maps they write, the UMEM's configuration and first fill, and the kernel's per-socket
// and the per-instance counters as JS sees them.
#pragma once

#include <napi.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>

extern "C" {
#include "galette_abi.h"
#include <bpf/bpf.h>
#include <linux/if_xdp.h>
#include <xdp/xsk.h>
}

namespace galette {

// An integer option of a pool config in [min, max]; `fallback` when absent. Throws a
// TypeError naming the option.
uint32_t PoolOptionU32(Napi::Env env, Napi::Object o, const char* key, uint32_t fallback, uint32_t min, uint32_t max);
// Throws a TypeError naming the first option that is not a power of two.
void RequirePow2(Napi::Env env, std::initializer_list<std::pair<const char*, uint32_t>> options);

bpf_map_info MapInfo(Napi::Env env, int fd, const std::string& what);

// The shared galette_xsks XSKMAP and galette_xsk_count map, checked: their sizes.
struct XskMaps {
  uint32_t slots = 0;          // XSKMAP entries
  uint32_t count_entries = 0;  // galette_xsk_count entries
};
XskMaps CheckXskMaps(Napi::Env env, int xsk_map_fd, int xsk_count_fd);

// A UMEM whose fill and completion rings hold every frame.
xsk_umem_config UmemConfig(uint32_t frame_count, uint32_t frame_size);
// Puts frames first .. first + n - 1 on a fill ring; false when it has no room for them all.
bool FillFrames(xsk_ring_prod* fq, uint32_t first, uint32_t n, uint32_t frame_size);

// The kernel's counters of one AF_XDP socket (false when it cannot tell), their sum, and
// their JS form (a worker's `kernel` stats).
bool SocketStats(int fd, xdp_statistics* out);
void AddStats(xdp_statistics* to, const xdp_statistics& s);
Napi::Object KernelStatsObject(Napi::Env env, const xdp_statistics& s);

// One NF instance's counters summed over worker threads, and their JS form (an entry of
// `stats().instances`).
struct InstanceTotals {
  uint64_t calls = 0;
  uint64_t nanoseconds = 0;
  uint64_t variants[GALETTE_MAX_ACTIONS] = {};
};
Napi::Object InstanceStatsObject(Napi::Env env, uint32_t id, const InstanceTotals& t);

}  // namespace galette
