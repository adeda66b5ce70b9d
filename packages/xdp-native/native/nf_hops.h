// One upcalled frame through the userland NFs: the hop loop both AF_XDP pools run (the
// in-process pool, pool_worker.cc, and the NF worker process, worker_main.cc). Starting
// from the upcall meta's (instance, action variant), it follows the action tables: each
// TAILCALL or UPCALL runs the native NF of instance `arg`, whose returned variant picks the
// next action, until a final verdict.
//
// Contract: the caller has checked that the frame's upcall meta lies inside the frame
// (offset >= sizeof meta) and that `len` bytes from `addr` fit it, and holds `table`, not
// NULL (see nf_table.h). Every frame it drops is counted exactly once, under the
// GALETTE_WORKER_COUNTERS name of its reason (worker_shm.h), so both pools report the same
// outcomes. What differs between the pools (where counters live, whether PASS has a way
// to the host stack, crash attribution, packet traces) is the `Hooks` type's, whose calls
// inline into this loop: it is the per-frame hot path.
#pragma once

#include <cstdint>

#include "nf_table.h"
#include "worker_loop.h"
#include "worker_shm.h"

extern "C" {
#include <linux/if_xdp.h>
}

namespace galette {

// RunHops's result for a frame not to be sent (counted); any other result is the verdict's
// kind, GALETTE_ACT_TX, GALETTE_ACT_REFLECT or GALETTE_ACT_PASS (GALETTE_ACT_ABORT, 0, is
// counted and never returned as a verdict).
constexpr uint32_t kHopsDropped = 0;

// What RunHops asks of a pool (all called on the worker thread):
//   bool CanPass()                                     PASS is a verdict (else passUnsupported)
//   void Count(shm::CounterIndex k, uint64_t n = 1)    outcomes, NF calls and their time
//   void Calling(uint32_t instance)                    right before the NF's code runs ...
//   void Returned()                                    ... and right after it returned
//   void CountCall(uint32_t instance, uint64_t ns)     per instance: one call and its time
//   void CountVariant(uint32_t instance, uint32_t v)   per instance: the variant it returned
//   void Hopped(uint32_t instance, uint32_t v, const galette_action& next, uint64_t now)
//                                                      the action the frame goes on with
//
// `base` is the UMEM area, `frame` the frame's offset in it, `addr` and `len` the frame's
// data. Returns kHopsDropped or the verdict's kind with `out` set to the data the NFs left.
template <typename Hooks>
[[gnu::always_inline]] inline uint32_t RunHops(const InstanceTable* table, const galette_upcall_meta& meta,
                                               uint8_t* base, uint64_t frame, uint32_t frame_size, uint64_t addr,
                                               uint32_t len, xdp_desc* out, Hooks& hooks) {
  using namespace shm;
  if (meta.instance >= GALETTE_MAX_INSTANCES || meta.action >= GALETTE_MAX_ACTIONS || !table->known[meta.instance]) {
    hooks.Count(k_badMeta);
    return kHopsDropped;
  }
  uint8_t* frame_start = base + frame;
  uint8_t* frame_end = frame_start + frame_size;
  const uint64_t offset = addr - frame;
  galette_action act = table->actions[meta.instance][meta.action];
  galette_pkt pkt{base + addr, len, static_cast<uint32_t>(offset), static_cast<uint32_t>(frame_size - offset - len)};
  for (uint32_t hops = 0;; hops++) {
    switch (act.kind) {
      case GALETTE_ACT_PASS:
        if (!hooks.CanPass()) {
          hooks.Count(k_passUnsupported);
          return kHopsDropped;
        }
        [[fallthrough]];
      case GALETTE_ACT_TX:
      case GALETTE_ACT_REFLECT:
        out->addr = static_cast<uint64_t>(pkt.data - base);
        out->len = pkt.len;
        out->options = 0;
        return act.kind;
      case GALETTE_ACT_DROP: hooks.Count(k_drop); return kHopsDropped;
      case GALETTE_ACT_ABORT: hooks.Count(k_abort); return kHopsDropped;
      case GALETTE_ACT_TAILCALL:
      case GALETTE_ACT_UPCALL: break;  // in userland both mean: run instance `arg` next
      default: hooks.Count(k_redirectUnsupported); return kHopsDropped;
    }
    if (hops >= kMaxHops) {
      hooks.Count(k_hopLimit);
      return kHopsDropped;
    }
    const uint32_t next = act.arg;
    if (next >= GALETTE_MAX_INSTANCES || !table->nf[next].packet) {
      hooks.Count(k_noNf);
      return kHopsDropped;
    }
    const NfEntry& nf = table->nf[next];
    hooks.Calling(next);
    const uint64_t t0 = NowNs();
    const uint32_t variant = nf.packet_mapped ? nf.packet_mapped(&pkt, nf.maps) : nf.packet(&pkt, nf.map_fds);
    const uint64_t t1 = NowNs();
    hooks.Returned();
    hooks.CountCall(next, t1 - t0);
    hooks.Count(k_nfCalls);
    hooks.Count(k_nfNanoseconds, t1 - t0);
    if (variant >= GALETTE_MAX_ACTIONS || !table->known[next]) {
      hooks.Count(k_badVariant);
      return kHopsDropped;
    }
    hooks.CountVariant(next, variant);
    // The NF may have moved data/len: only within its frame.
    if (pkt.data < frame_start || pkt.len == 0 || pkt.data + pkt.len > frame_end) {
      hooks.Count(k_badPacket);
      return kHopsDropped;
    }
    act = table->actions[next][variant];
    hooks.Hopped(next, variant, act, t1);
  }
}

}  // namespace galette
