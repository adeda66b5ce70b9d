// The in-process AF_XDP pool: N native threads, one AF_XDP socket each on one interface queue,
// all sharing one UMEM. Each worker runs the upcalled frames through the native NF
// libraries to completion (no way back into XDP), then transmits or recycles the frame.
//
// Frame ownership: every UMEM frame is always in exactly one place: the fill ring, the
// kernel, a worker's RX ring, a worker's hands, its TX ring, or the completion ring. The
// fill and completion rings are single-producer/single-consumer and shared by all sockets
// on the queue, so a mutex guards both: after each batch a worker takes it once, moves
// completed TX frames and the frames it dropped back to the fill ring, and releases it.
// Uncontended, a futex mutex costs no syscall. The fill ring has room for every frame, so
// recycling never fails.
//
// The instance table (which native NF runs as which instance, with which map fds, and
// every instance's action table) is built by the JS thread (start, updateInstances,
// reloadActions) as an immutable object and published through an atomic pointer; workers
// load it once per batch, so the fast path makes no syscalls except AF_XDP wake-ups (and
// whatever the NFs do) and takes no lock for it. Retiring a table (and the libraries and
// fds only it references) uses hazard pointers: each worker announces the table it holds
// and clears the announcement before it sleeps; the JS thread frees a retired table once
// no worker announces it.
//
// Files: this header (the types every part shares), pool_worker.cc (the hot path: a
// worker thread's loop, one frame through the NFs), pool_table.cc (instance tables:
// loading, publication, retirement) and pool.cc (the N-API surface: start, update, stats,
// stop). The instance table itself is nf_table.h's and one frame's hops through the NFs
// nf_hops.h's, both shared with the NF worker process.
#pragma once

#include <napi.h>
#include <time.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common.h"
#include "nf_table.h"
#include "worker_loop.h"
#include "worker_shm.h"  // GALETTE_WORKER_COUNTERS: both pools count the same outcomes

extern "C" {
#include <linux/if_xdp.h>
#include <xdp/xsk.h>
}

namespace galette {
namespace inproc {

struct Counter {
  std::atomic<uint64_t> value{0};
  // One writer (the owning worker): a plain load+store avoids a locked instruction.
  void Add(uint64_t n) { value.store(value.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  uint64_t Get() const { return value.load(std::memory_order_relaxed); }
};

struct WorkerStats {
#define X(name, doc) Counter name;
  GALETTE_WORKER_COUNTERS(X)
#undef X
  // By the NF worker process's index (nf_hops.h counts that way); a constant k folds away.
  Counter& At(shm::CounterIndex k) {
    switch (k) {
#define X(name, doc) \
  case shm::k_##name: return name;
      GALETTE_WORKER_COUNTERS(X)
#undef X
      case shm::kCounterCount: break;
    }
    return rx;  // unreachable: every index names a counter
  }
};

struct InstanceStats {
  Counter calls;
  Counter nanoseconds;
  Counter variants[GALETTE_MAX_ACTIONS];
};

struct InstanceConfig {
  uint32_t id = 0;
  int actions_fd = -1;
  std::string library;
  std::vector<int> map_fds;
};

enum class State : int { Starting = 0, Running = 1, Failed = 2, Stopped = 3 };
inline const char* StateName(State s) {
  switch (s) {
    case State::Starting: return "starting";
    case State::Running: return "running";
    case State::Failed: return "failed";
    case State::Stopped: return "stopped";
  }
  return "unknown";
}

struct Event {
  std::string type;  // "ready" | "error"
  uint32_t worker = 0;
  std::string message;
  int err = 0;
};

struct Pool;

struct Worker {
  uint32_t index = 0;
  xsk_socket* xsk = nullptr;
  xsk_ring_cons rx{};
  xsk_ring_prod tx{};
  int fd = -1;
  std::thread thread;
  std::atomic<State> state{State::Starting};
  // Hazard pointer: the table this worker may be reading, nullptr while it sleeps or is done.
  std::atomic<const InstanceTable*> holding{nullptr};
  // Generation of the last table this worker picked up (stats only).
  std::atomic<uint64_t> last_generation{0};
  std::mutex error_mutex;
  std::string error;
  int error_errno = 0;
  WorkerStats stats;
  std::unique_ptr<InstanceStats[]> instances{new InstanceStats[GALETTE_MAX_INSTANCES]};
  bool tx_outstanding = false;
  // Idle-loop bookkeeping (worker thread only).
  InFlightSpin spin;

  void Run(Pool* pool);
  const InstanceTable* Enter(Pool* pool);
  void Leave() { holding.store(nullptr, std::memory_order_release); }
  void Fail(Pool* pool, int err, const std::string& message);
  bool Process(Pool* pool, const InstanceTable* table, uint64_t addr, uint32_t len, xdp_desc* out);
  void KickTx();
};

struct Pool {
  // configuration
  std::string ifname, netns;
  uint32_t queue = 0, worker_count = 1, frame_size = XSK_UMEM__DEFAULT_FRAME_SIZE, frame_count = 4096;
  uint32_t ring_size = 2048, batch_size = 64, poll_timeout_ms = 1000;
  bool busy_poll = false;
  int xsk_map_fd = -1, xsk_count_fd = -1;
  // The instance set of the current table (JS thread only; ids stay readable after stop).
  std::vector<std::shared_ptr<LoadedInstance>> instances;
  std::vector<uint32_t> instance_ids;

  // resources
  void* area = nullptr;
  size_t area_size = 0;
  xsk_umem* umem = nullptr;
  xsk_ring_prod fq{};
  xsk_ring_cons cq{};
  std::mutex ring_lock;
  // Frames submitted to any TX ring and not yet seen on the completion ring. Written under
  // ring_lock; read without it by idle workers. May dip below zero for a moment when one
  // worker reaps another's completions before that one has counted its submission.
  int64_t tx_in_flight_locked = 0;
  std::atomic<int64_t> tx_in_flight{0};
  int wake_fd = -1;
  std::vector<std::unique_ptr<Worker>> workers;
  std::atomic<InstanceTable*> current{nullptr};
  std::vector<InstanceTable*> retired;  // published before, maybe still held by a worker
  uint64_t generation = 0;
  std::atomic<bool> stop{false};
  bool running = false;
  bool published = false;  // sockets are in the XSKMAP and the count map is set
  std::atomic<bool> has_events{false};
  Napi::ThreadSafeFunction events;

  void Emit(Event* e) {
    if (!has_events || events.BlockingCall(e, Deliver) != napi_ok) delete e;
  }
  static void Deliver(Napi::Env env, Napi::Function fn, Event* e) {
    if (env != nullptr && fn != nullptr) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("type", e->type);
      o.Set("worker", e->worker);
      o.Set("message", e->message);
      if (e->err) {
        o.Set("errno", e->err);
        o.Set("code", ErrnoName(e->err));
      }
      fn.Call({o});
    }
    delete e;
  }

  // Moves completed TX frames and `dropped` frames back to the fill ring; `sent` frames
  // were just submitted to the caller's TX ring (counted in flight).
  void Recycle(const uint64_t* dropped, uint32_t n_dropped, uint32_t sent, bool wait) {
    std::unique_lock<std::mutex> lock(ring_lock, std::defer_lock);
    if (wait)
      lock.lock();
    else if (!lock.try_lock())
      return;  // idle loop (sent == 0): another worker is already recycling
    uint32_t cidx = 0, fidx = 0;
    uint32_t done = xsk_ring_cons__peek(&cq, frame_count, &cidx);
    if (sent || done) {
      tx_in_flight_locked += static_cast<int64_t>(sent) - static_cast<int64_t>(done);
      tx_in_flight.store(tx_in_flight_locked, std::memory_order_relaxed);
    }
    uint32_t total = done + n_dropped;
    if (total == 0) return;
    // Cannot fail: the fill ring holds frame_count entries and every frame is unique.
    while (xsk_ring_prod__reserve(&fq, total, &fidx) != total) {
    }
    for (uint32_t i = 0; i < done; i++)
      *xsk_ring_prod__fill_addr(&fq, fidx++) = FrameOf(*xsk_ring_cons__comp_addr(&cq, cidx + i));
    for (uint32_t i = 0; i < n_dropped; i++) *xsk_ring_prod__fill_addr(&fq, fidx++) = FrameOf(dropped[i]);
    xsk_ring_prod__submit(&fq, total);
    xsk_ring_cons__release(&cq, done);
  }
  uint64_t FrameOf(uint64_t addr) const { return addr & ~static_cast<uint64_t>(frame_size - 1); }
};

// ---- instance tables (pool_table.cc; JS thread) ---------------------------------------------

std::vector<std::shared_ptr<LoadedInstance>> LoadInstances(Napi::Env env, const std::vector<InstanceConfig>& configs);
std::unique_ptr<InstanceTable> BuildTable(Napi::Env env, const std::vector<std::shared_ptr<LoadedInstance>>& instances,
                                          uint64_t generation);
void Reclaim(Pool* pool, bool all);
void Publish(Pool* pool, std::unique_ptr<InstanceTable> table);
bool Quiesced(Pool* pool, uint64_t generation);

}  // namespace inproc
}  // namespace galette
