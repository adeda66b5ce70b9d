// AF_XDP worker pool: N native threads, one AF_XDP socket each on one interface queue,
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
#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "common.h"
#include "exports.h"

extern "C" {
#include <bpf/bpf.h>
#include <linux/if_xdp.h>
#include <xdp/xsk.h>

#include "galette_abi.h"
#include "map_view.h"
}

namespace galette {
namespace {

// Longest userland NF path; a cycle in the action tables ends here instead of spinning.
constexpr uint32_t kMaxHops = 64;
constexpr uint32_t kTxKickAttempts = 64;
// A blocking worker keeps looping instead of sleeping while transmitted frames await their
// completion (under load they come back, and the next RX batch arrives, within
// microseconds; the C baseline does the same), but only while the count of frames in
// flight keeps moving: when it has not moved for this long (peer gone, link down), the
// worker sleeps as usual.
constexpr uint64_t kInFlightSpinNs = 1000000;

struct Counter {
  std::atomic<uint64_t> value{0};
  // One writer (the owning worker): a plain load+store avoids a locked instruction.
  void Add(uint64_t n) { value.store(value.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  uint64_t Get() const { return value.load(std::memory_order_relaxed); }
};

#define GALETTE_WORKER_COUNTERS(X)                                                            \
  X(rx, "frames received")                                                                    \
  X(tx, "frames transmitted")                                                                 \
  X(drop, "DROP verdicts")                                                                    \
  X(abort, "ABORT verdicts")                                                                  \
  X(passUnsupported, "PASS verdicts, dropped: AF_XDP cannot hand frames to the kernel stack") \
  X(redirectUnsupported, "REDIRECT or unknown action kinds, dropped")                         \
  X(badMeta, "frames whose upcall metadata names no configured instance/action")              \
  X(hopLimit, "frames dropped after kMaxHops NF calls (cycle)")                               \
  X(noNf, "frames sent to an instance without a native library")                              \
  X(badVariant, "NF returned a variant index outside its action table")                       \
  X(badPacket, "NF moved data/len outside the frame")                                         \
  X(txRingFull, "frames dropped because the TX ring stayed full")                             \
  X(txErrors, "failed TX wake-ups")                                                           \
  X(wakeups, "wake-up syscalls (TX kicks, fill-ring wake-ups, polls)")                        \
  X(batches, "non-empty RX batches")                                                          \
  X(nfCalls, "native NF invocations")                                                         \
  X(nfNanoseconds, "time spent inside native NFs")

struct WorkerStats {
#define X(name, doc) Counter name;
  GALETTE_WORKER_COUNTERS(X)
#undef X
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

using NfPacketFn = uint32_t (*)(galette_pkt*, const int*);
using NfPacketMappedFn = uint32_t (*)(galette_pkt*, const galette_nf_map*);

// One NF instance as the workers run it. Owns duplicates of the caller's fds (the caller
// may close its own once the instance is retired) and a dlopen reference to its library;
// both are released when the last table referencing the instance is freed, which only
// happens after no worker can still be running it. Built and destroyed on the JS thread.
struct LoadedInstance {
  uint32_t id = 0;
  std::string library;
  int actions_fd = -1;
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

// What workers read per frame. Immutable once published.
struct InstanceTable {
  uint64_t generation = 0;
  bool known[GALETTE_MAX_INSTANCES] = {};
  galette_action actions[GALETTE_MAX_INSTANCES][GALETTE_MAX_ACTIONS] = {};
  NfEntry nf[GALETTE_MAX_INSTANCES] = {};
  // Keeps libraries and fds alive while this table may be in use (JS thread only).
  std::vector<std::shared_ptr<LoadedInstance>> owners;
};

enum class State : int { Starting = 0, Running = 1, Failed = 2, Stopped = 3 };
const char* StateName(State s) {
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
  // Idle-loop bookkeeping for kInFlightSpinNs (worker thread only).
  int64_t seen_in_flight = 0;
  uint64_t in_flight_since = 0;

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

inline uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

void Worker::Fail(Pool* pool, int err, const std::string& message) {
  {
    std::lock_guard<std::mutex> g(error_mutex);
    error = message;
    error_errno = err;
  }
  state.store(State::Failed);
  pool->Emit(new Event{"error", index, message, err});
}

// Picks up the current table and announces it, re-checking that it is still current after
// the announcement: then the JS thread, which reads announcements after swapping the
// pointer, cannot miss it (all seq_cst). The table is not touched before that check.
const InstanceTable* Worker::Enter(Pool* pool) {
  for (;;) {
    const InstanceTable* t = pool->current.load();
    holding.store(t);
    if (pool->current.load() == t) {
      last_generation.store(t->generation, std::memory_order_relaxed);
      return t;
    }
  }
}

// Runs one frame to completion. Returns true with `out` set when the frame is to be
// transmitted; false when it is to be recycled (every such outcome is counted).
bool Worker::Process(Pool* pool, const InstanceTable* table, uint64_t addr, uint32_t len, xdp_desc* out) {
  uint8_t* base = static_cast<uint8_t*>(pool->area);
  uint64_t frame = pool->FrameOf(addr);
  uint64_t offset = addr - frame;
  uint8_t* frame_start = base + frame;
  uint8_t* frame_end = frame_start + pool->frame_size;
  if (offset < sizeof(galette_upcall_meta) || offset + len > pool->frame_size) {
    stats.badMeta.Add(1);
    return false;
  }
  galette_upcall_meta meta;
  memcpy(&meta, base + addr - sizeof meta, sizeof meta);
  meta.action &= 0x7fffffffu;  // GALETTE_UPCALL_TRACED: this baseline pool writes no trace records
  if (meta.instance >= GALETTE_MAX_INSTANCES || meta.action >= GALETTE_MAX_ACTIONS || !table->known[meta.instance]) {
    stats.badMeta.Add(1);
    return false;
  }
  galette_action act = table->actions[meta.instance][meta.action];
  galette_pkt pkt{base + addr, len, static_cast<uint32_t>(offset),
                  static_cast<uint32_t>(pool->frame_size - offset - len)};
  for (uint32_t hops = 0;; hops++) {
    switch (act.kind) {
      case GALETTE_ACT_TX:
      case GALETTE_ACT_REFLECT:
        out->addr = static_cast<uint64_t>(pkt.data - base);
        out->len = pkt.len;
        out->options = 0;
        return true;
      case GALETTE_ACT_DROP: stats.drop.Add(1); return false;
      case GALETTE_ACT_ABORT: stats.abort.Add(1); return false;
      case GALETTE_ACT_PASS: stats.passUnsupported.Add(1); return false;
      case GALETTE_ACT_TAILCALL:
      case GALETTE_ACT_UPCALL: break;  // in userland both mean: run instance `arg` next
      default: stats.redirectUnsupported.Add(1); return false;
    }
    if (hops >= kMaxHops) {
      stats.hopLimit.Add(1);
      return false;
    }
    uint32_t next = act.arg;
    if (next >= GALETTE_MAX_INSTANCES || !table->nf[next].packet) {
      stats.noNf.Add(1);
      return false;
    }
    const NfEntry& nf = table->nf[next];
    uint64_t t0 = NowNs();
    uint32_t variant = nf.packet_mapped ? nf.packet_mapped(&pkt, nf.maps) : nf.packet(&pkt, nf.map_fds);
    uint64_t t1 = NowNs();
    InstanceStats& is = instances[next];
    is.calls.Add(1);
    is.nanoseconds.Add(t1 - t0);
    stats.nfCalls.Add(1);
    stats.nfNanoseconds.Add(t1 - t0);
    if (variant >= GALETTE_MAX_ACTIONS || !table->known[next]) {
      stats.badVariant.Add(1);
      return false;
    }
    is.variants[variant].Add(1);
    if (pkt.data < frame_start || pkt.len == 0 || pkt.data + pkt.len > frame_end) {
      stats.badPacket.Add(1);
      return false;
    }
    act = table->actions[next][variant];
  }
}

// In copy mode the kernel sends at most a small batch per sendto() and answers EAGAIN
// while more is queued, so kick until the ring is drained or the budget is spent.
void Worker::KickTx() {
  tx_outstanding = false;
  for (uint32_t i = 0; i < kTxKickAttempts; i++) {
    stats.wakeups.Add(1);
    if (sendto(fd, nullptr, 0, MSG_DONTWAIT, nullptr, 0) >= 0) return;
    if (errno == EAGAIN || errno == EBUSY || errno == ENOBUFS) {
      tx_outstanding = true;
      continue;
    }
    if (errno == ENETDOWN) return;
    stats.txErrors.Add(1);
    return;
  }
}

void Worker::Run(Pool* pool) {
  state.store(State::Running);
  pool->Emit(new Event{"ready", index, "", 0});
  const uint32_t batch = pool->batch_size;
  std::vector<uint64_t> dropped(batch);
  std::vector<xdp_desc> out(batch);
  const InstanceTable* table = nullptr;
  while (!pool->stop.load(std::memory_order_relaxed)) {
    // One atomic load per iteration; the announcement only when the table changed.
    if (pool->current.load(std::memory_order_acquire) != table) table = Enter(pool);
    uint32_t ridx = 0;
    uint32_t n = xsk_ring_cons__peek(&rx, batch, &ridx);
    if (n == 0) {
      if (tx_outstanding) KickTx();
      pool->Recycle(nullptr, 0, 0, false);
      if (pool->busy_poll) {
        if (xsk_ring_prod__needs_wakeup(&pool->fq)) {
          stats.wakeups.Add(1);
          recvfrom(fd, nullptr, 0, MSG_DONTWAIT, nullptr, nullptr);
        }
        continue;
      }
      // Sleeping now would leave sent frames uncompleted and this CPU to others while the
      // next RX batch is microseconds away; the C baseline sleeps only with nothing in flight.
      int64_t in_flight = pool->tx_in_flight.load(std::memory_order_relaxed);
      if (in_flight > 0) {
        uint64_t now = NowNs();
        if (in_flight != seen_in_flight) {
          seen_in_flight = in_flight;
          in_flight_since = now;
        }
        if (now - in_flight_since < kInFlightSpinNs) continue;
      } else {
        seen_in_flight = 0;
      }
      // Holding no table while asleep lets updates complete without waking us.
      Leave();
      table = nullptr;
      pollfd fds[2] = {{fd, POLLIN, 0}, {pool->wake_fd, POLLIN, 0}};
      stats.wakeups.Add(1);
      int r = poll(fds, 2, tx_outstanding ? 1 : static_cast<int>(pool->poll_timeout_ms));
      if (r < 0 && errno != EINTR) {
        Fail(pool, errno, "worker " + std::to_string(index) + ": poll on AF_XDP socket: " + strerror(errno));
        break;
      }
      continue;
    }
    stats.rx.Add(n);
    stats.batches.Add(1);
    uint32_t n_dropped = 0, n_tx = 0, n_sent = 0;
    for (uint32_t i = 0; i < n; i++) {
      const xdp_desc* d = xsk_ring_cons__rx_desc(&rx, ridx + i);
      if (Process(pool, table, d->addr, d->len, &out[n_tx]))
        n_tx++;
      else
        dropped[n_dropped++] = d->addr;
    }
    xsk_ring_cons__release(&rx, n);
    if (n_tx) {
      uint32_t tidx = 0;
      uint32_t attempt = 0;
      // reserve() is all-or-nothing; a full ring drains as the kernel sends.
      while (xsk_ring_prod__reserve(&tx, n_tx, &tidx) != n_tx && attempt++ < kTxKickAttempts) KickTx();
      if (attempt > kTxKickAttempts) {
        stats.txRingFull.Add(n_tx);
        for (uint32_t i = 0; i < n_tx; i++) dropped[n_dropped++] = out[i].addr;
      } else {
        for (uint32_t i = 0; i < n_tx; i++) *xsk_ring_prod__tx_desc(&tx, tidx + i) = out[i];
        xsk_ring_prod__submit(&tx, n_tx);
        stats.tx.Add(n_tx);
        n_sent = n_tx;
        if (xsk_ring_prod__needs_wakeup(&tx)) KickTx();
      }
    }
    pool->Recycle(dropped.data(), n_dropped, n_sent, true);
  }
  Leave();
  if (state.load() == State::Running) state.store(State::Stopped);
}

std::set<Pool*>& LivePools() {
  static std::set<Pool*> pools;
  return pools;
}

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

bpf_map_info MapInfo(Napi::Env env, int fd, const std::string& what) {
  bpf_map_info mi{};
  uint32_t len = sizeof mi;
  if (bpf_obj_get_info_by_fd(fd, &mi, &len) != 0)
    ThrowErrno(env, errno, "inspect " + what + " (fd " + std::to_string(fd) + ")");
  return mi;
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

// Undoes whatever Start managed to set up; safe on a partly started pool. Returns the
// first cleanup error ("" if none).
std::string Teardown(Pool* pool) {
  std::string first_error;
  auto note = [&](const std::string& what) {
    if (first_error.empty()) first_error = what + ": " + strerror(errno) + " (" + ErrnoName(errno) + ")";
  };
  // Stop XDP from choosing our sockets before they go away.
  if (pool->published) {
    pool->published = false;
    uint32_t zero = 0, key = 0;
    if (bpf_map_update_elem(pool->xsk_count_fd, &key, &zero, 0) != 0) note("reset socket count map");
    for (uint32_t i = 0; i < pool->workers.size(); i++)
      if (bpf_map_delete_elem(pool->xsk_map_fd, &i) != 0 && errno != ENOENT)
        note("clear XSKMAP slot " + std::to_string(i));
  }
  pool->stop.store(true);
  if (pool->wake_fd >= 0) {
    uint64_t one = 1;
    if (write(pool->wake_fd, &one, sizeof one) < 0) note("wake workers");
  }
  for (auto& w : pool->workers)
    if (w->thread.joinable()) w->thread.join();
  // Workers stay (with their final stats) until the pool handle is collected.
  for (auto& w : pool->workers) {
    if (w->xsk) xsk_socket__delete(w->xsk);
    w->xsk = nullptr;
    w->fd = -1;
  }
  if (pool->umem) {
    int err = xsk_umem__delete(pool->umem);
    if (err) {
      errno = -err;
      note("delete UMEM");
    }
    pool->umem = nullptr;
  }
  if (pool->area) munmap(pool->area, pool->area_size);
  pool->area = nullptr;
  if (pool->wake_fd >= 0) close(pool->wake_fd);
  pool->wake_fd = -1;
  if (InstanceTable* t = pool->current.exchange(nullptr)) pool->retired.push_back(t);
  Reclaim(pool, true);
  pool->instances.clear();
  if (pool->has_events) {
    pool->events.Release();
    pool->has_events = false;
  }
  pool->running = false;
  LivePools().erase(pool);
  return first_error;
}

uint32_t GetU32(Napi::Env env, Napi::Object o, const char* key, uint32_t fallback, uint32_t min, uint32_t max) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsNumber()) ThrowType(env, std::string("worker pool option ") + key + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (d < min || d > max || d != static_cast<double>(static_cast<uint64_t>(d)))
    ThrowType(env, std::string("worker pool option ") + key + " must be an integer in [" + std::to_string(min) + ", " +
                       std::to_string(max) + "], got " + std::to_string(d));
  return static_cast<uint32_t>(d);
}

bool IsPow2(uint32_t v) { return v && !(v & (v - 1)); }

// Reads an instance list (start config or update); `what` prefixes errors.
std::vector<InstanceConfig> ParseInstances(Napi::Env env, Napi::Value list, const std::string& what) {
  if (!list.IsArray()) ThrowType(env, what + " must be an array");
  Napi::Array arr = list.As<Napi::Array>();
  std::vector<InstanceConfig> out;
  std::set<uint32_t> seen;
  for (uint32_t i = 0; i < arr.Length(); i++) {
    std::string at = what + "[" + std::to_string(i) + "]";
    if (!arr.Get(i).IsObject()) ThrowType(env, at + " must be an object");
    Napi::Object e = arr.Get(i).As<Napi::Object>();
    InstanceConfig inst;
    inst.id = GetU32(env, e, "id", UINT32_MAX, 0, GALETTE_MAX_INSTANCES - 1);
    if (inst.id == UINT32_MAX) ThrowType(env, at + ".id is required");
    if (!seen.insert(inst.id).second) ThrowType(env, "instance id " + std::to_string(inst.id) + " is listed twice");
    inst.actions_fd = static_cast<int>(GetU32(env, e, "actionsMapFd", UINT32_MAX, 0, INT32_MAX));
    if (inst.actions_fd < 0) ThrowType(env, at + ".actionsMapFd is required");
    if (e.Get("library").IsString()) inst.library = e.Get("library").As<Napi::String>().Utf8Value();
    Napi::Value fds = e.Get("mapFds");
    if (fds.IsArray()) {
      Napi::Array fa = fds.As<Napi::Array>();
      if (fa.Length() > GALETTE_MAX_MAPS)
        ThrowType(env, "instance " + std::to_string(inst.id) + " has " + std::to_string(fa.Length()) +
                           " map fds, at most " + std::to_string(GALETTE_MAX_MAPS));
      for (uint32_t j = 0; j < fa.Length(); j++) {
        if (!fa.Get(j).IsNumber()) ThrowType(env, "instance " + std::to_string(inst.id) + " mapFds must be numbers");
        inst.map_fds.push_back(fa.Get(j).As<Napi::Number>().Int32Value());
      }
    }
    out.push_back(std::move(inst));
  }
  return out;
}

std::vector<InstanceConfig> ParseConfig(Napi::Env env, Napi::Object cfg, Pool* pool) {
  if (!cfg.Get("ifname").IsString()) ThrowType(env, "worker pool option ifname must be a string");
  pool->ifname = cfg.Get("ifname").As<Napi::String>().Utf8Value();
  if (cfg.Get("netns").IsString()) pool->netns = cfg.Get("netns").As<Napi::String>().Utf8Value();
  pool->queue = GetU32(env, cfg, "queue", 0, 0, 1u << 16);
  pool->worker_count = GetU32(env, cfg, "workers", 1, 1, GALETTE_MAX_XSKS);
  pool->frame_size = GetU32(env, cfg, "frameSize", XSK_UMEM__DEFAULT_FRAME_SIZE, 2048, 4096);
  pool->frame_count = GetU32(env, cfg, "frameCount", 4096, 64, 1u << 20);
  pool->ring_size = GetU32(env, cfg, "ringSize", 2048, 64, 1u << 16);
  pool->batch_size = GetU32(env, cfg, "batchSize", 64, 1, 1024);
  pool->poll_timeout_ms = GetU32(env, cfg, "pollTimeoutMs", 1000, 1, 60000);
  pool->busy_poll = cfg.Get("busyPoll").ToBoolean();
  const std::pair<const char*, uint32_t> pow2[] = {
      {"frameSize", pool->frame_size}, {"frameCount", pool->frame_count}, {"ringSize", pool->ring_size}};
  for (const auto& [name, v] : pow2)
    if (!IsPow2(v))
      ThrowType(env, std::string("worker pool option ") + name + " must be a power of two, got " + std::to_string(v));
  pool->xsk_map_fd = static_cast<int>(GetU32(env, cfg, "xskMapFd", UINT32_MAX, 0, INT32_MAX));
  pool->xsk_count_fd = static_cast<int>(GetU32(env, cfg, "xskCountMapFd", UINT32_MAX, 0, INT32_MAX));
  if (pool->xsk_map_fd < 0 || pool->xsk_count_fd < 0)
    ThrowType(env, "worker pool options xskMapFd and xskCountMapFd are required");
  return ParseInstances(env, cfg.Get("instances"), "worker pool option instances");
}

// Checks the maps the pool writes to or reads from have the shapes the ABI says.
void CheckMaps(Napi::Env env, Pool* pool) {
  auto info = [&](int fd, const std::string& what) { return MapInfo(env, fd, what); };
  bpf_map_info x = info(pool->xsk_map_fd, "XSKMAP");
  if (x.type != BPF_MAP_TYPE_XSKMAP)
    ThrowErrno(env, EINVAL, "xskMapFd " + std::to_string(pool->xsk_map_fd) + " is not an XSKMAP");
  if (x.max_entries < pool->worker_count)
    ThrowErrno(env, EINVAL,
               "XSKMAP has " + std::to_string(x.max_entries) + " slots for " + std::to_string(pool->worker_count) +
                   " workers");
  bpf_map_info c = info(pool->xsk_count_fd, "socket count map");
  if (c.type != BPF_MAP_TYPE_ARRAY || c.key_size != 4 || c.value_size != 4)
    ThrowErrno(env, EINVAL, "xskCountMapFd must be an ARRAY u32 -> u32 (galette_xsk_count)");
}

void SetUp(Napi::Env env, Pool* pool) {
  NetnsScope ns(env, pool->netns);
  std::string where = pool->ifname + " queue " + std::to_string(pool->queue);
  pool->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (pool->wake_fd < 0) ThrowErrno(env, errno, "create worker wake-up eventfd");
  pool->area_size = static_cast<size_t>(pool->frame_count) * pool->frame_size;
  pool->area =
      mmap(nullptr, pool->area_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (pool->area == MAP_FAILED) {
    pool->area = nullptr;
    ThrowErrno(env, errno, "map " + std::to_string(pool->area_size) + " bytes of UMEM");
  }
  xsk_umem_config ucfg{};
  ucfg.fill_size = pool->frame_count;
  ucfg.comp_size = pool->frame_count;
  ucfg.frame_size = pool->frame_size;
  ucfg.frame_headroom = 0;
  // libxdp reads the rings' cached indices: they must start zeroed (docs/toolchain.md).
  pool->fq = xsk_ring_prod{};
  pool->cq = xsk_ring_cons{};
  int err = xsk_umem__create(&pool->umem, pool->area, pool->area_size, &pool->fq, &pool->cq, &ucfg);
  if (err) {
    pool->umem = nullptr;
    ThrowErrno(env, err, "create UMEM for " + where, {{"ifname", pool->ifname}});
  }
  for (uint32_t i = 0; i < pool->worker_count; i++) {
    auto w = std::make_unique<Worker>();
    w->index = i;
    xsk_socket_config scfg{};
    scfg.rx_size = pool->ring_size;
    scfg.tx_size = pool->ring_size;
    // We own the XDP side (root program + XSKMAP); copy mode because veth has no zero-copy.
    scfg.libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD;
    scfg.bind_flags = XDP_COPY | XDP_USE_NEED_WAKEUP;
    err = xsk_socket__create_shared(&w->xsk, pool->ifname.c_str(), pool->queue, pool->umem, &w->rx, &w->tx, &pool->fq,
                                    &pool->cq, &scfg);
    if (err) {
      w->xsk = nullptr;
      pool->workers.push_back(std::move(w));
      ThrowErrno(env, err, "create AF_XDP socket " + std::to_string(i) + " on " + where, {{"ifname", pool->ifname}});
    }
    w->fd = xsk_socket__fd(w->xsk);
    pool->workers.push_back(std::move(w));
  }
  uint32_t fidx = 0;
  if (xsk_ring_prod__reserve(&pool->fq, pool->frame_count, &fidx) != pool->frame_count)
    ThrowErrno(env, ENOSPC,
               "fill ring of " + where + " cannot take all " + std::to_string(pool->frame_count) + " frames");
  for (uint32_t i = 0; i < pool->frame_count; i++)
    *xsk_ring_prod__fill_addr(&pool->fq, fidx + i) = static_cast<uint64_t>(i) * pool->frame_size;
  xsk_ring_prod__submit(&pool->fq, pool->frame_count);
}

void PublishSockets(Napi::Env env, Pool* pool) {
  pool->published = true;
  for (uint32_t i = 0; i < pool->workers.size(); i++) {
    int fd = pool->workers[i]->fd;
    if (bpf_map_update_elem(pool->xsk_map_fd, &i, &fd, 0) != 0)
      ThrowErrno(env, errno, "put AF_XDP socket " + std::to_string(i) + " into XSKMAP slot " + std::to_string(i));
  }
  uint32_t key = 0, count = static_cast<uint32_t>(pool->workers.size());
  if (bpf_map_update_elem(pool->xsk_count_fd, &key, &count, 0) != 0)
    ThrowErrno(env, errno, "set galette_xsk_count to " + std::to_string(count));
}

Pool* GetPool(const Napi::CallbackInfo& info) {
  if (!info[0].IsExternal()) ThrowType(info.Env(), "expected a worker pool handle");
  return info[0].As<Napi::External<Pool>>().Data();
}

void FinalizePool(Napi::Env, Pool* pool) {
  if (pool->running) Teardown(pool);
  delete pool;
}

// poolStart(config, onEvent) -> handle. NF libraries are loaded and checked, then sockets,
// UMEM and XSKMAP entries are set up, all here, synchronously, so library, interface and
// map errors throw; each worker then reports "ready" (or a later "error") through onEvent.
Napi::Value Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) ThrowType(env, "worker pool config must be an object");
  if (!info[1].IsFunction()) ThrowType(env, "worker pool event callback must be a function");
  auto pool = std::make_unique<Pool>();
  std::vector<InstanceConfig> configs = ParseConfig(env, info[0].As<Napi::Object>(), pool.get());
  CheckMaps(env, pool.get());
  Publish(pool.get(), BuildTable(env, LoadInstances(env, configs), 1));
  pool->running = true;
  LivePools().insert(pool.get());
  try {
    SetUp(env, pool.get());
    pool->events = Napi::ThreadSafeFunction::New(env, info[1].As<Napi::Function>(), "galette-xsk-workers", 0, 1);
    pool->has_events = true;
    // Events must not keep the process alive on their own: stop() or GC ends the pool.
    pool->events.Unref(env);
    PublishSockets(env, pool.get());
    for (auto& w : pool->workers) {
      Worker* wp = w.get();
      Pool* pp = pool.get();
      wp->thread = std::thread([wp, pp] {
        try {
          wp->Run(pp);
        } catch (const std::exception& e) {
          wp->Leave();
          wp->Fail(pp, EIO, "worker " + std::to_string(wp->index) + ": " + e.what());
        } catch (...) {
          wp->Leave();
          wp->Fail(pp, EIO, "worker " + std::to_string(wp->index) + ": unknown failure");
        }
      });
    }
  } catch (...) {
    Teardown(pool.get());
    throw;
  }
  return Napi::External<Pool>::New(env, pool.release(), FinalizePool);
}

Napi::Value Stop(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Pool* pool = GetPool(info);
  if (!pool->running) return env.Undefined();
  std::string err = Teardown(pool);
  if (!err.empty()) ThrowErrno(env, EIO, "stop AF_XDP worker pool on " + pool->ifname + ": " + err);
  return env.Undefined();
}

// poolReload(handle) -> generation: re-reads every action table and publishes it to the
// workers (how a relink reaches userland).
Napi::Value Reload(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Pool* pool = GetPool(info);
  if (!pool->running) ThrowType(env, "worker pool on " + pool->ifname + " is stopped");
  Publish(pool, BuildTable(env, pool->instances, pool->generation + 1));
  return Napi::Number::New(env, static_cast<double>(pool->generation));
}

// poolUpdate(handle, instances) -> generation: loads and checks the new instance set on
// this thread (libraries already loaded are shared, not reloaded), reads every action
// table, and publishes the result as one table. Any error throws before the workers see
// anything. Retired instances stay loaded until poolQuiesced says no worker runs them.
Napi::Value Update(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Pool* pool = GetPool(info);
  if (!pool->running) ThrowType(env, "worker pool on " + pool->ifname + " is stopped: cannot update its NF instances");
  std::vector<InstanceConfig> configs = ParseInstances(env, info[1], "instances");
  Publish(pool, BuildTable(env, LoadInstances(env, configs), pool->generation + 1));
  return Napi::Number::New(env, static_cast<double>(pool->generation));
}

// poolQuiesced(handle, generation) -> bool: frees retired tables no worker holds (closing
// their fds, dlclosing their libraries) and says whether any older than `generation` is
// still held. Always true once the pool is stopped.
Napi::Value QuiescedCall(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Pool* pool = GetPool(info);
  double g = info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : 0;
  return Napi::Boolean::New(env, Quiesced(pool, static_cast<uint64_t>(g)));
}

Napi::Value Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Pool* pool = GetPool(info);
  Napi::Object out = Napi::Object::New(env);
  out.Set("generation", static_cast<double>(pool->generation));
  out.Set("running", pool->running);
  // Tables replaced but not yet freed because a worker may still hold them.
  out.Set("retiredTables", static_cast<double>(pool->retired.size()));
  Napi::Array workers = Napi::Array::New(env);
  for (uint32_t i = 0; i < pool->workers.size(); i++) {
    Worker* w = pool->workers[i].get();
    Napi::Object o = Napi::Object::New(env);
    o.Set("index", i);
    o.Set("state", StateName(w->state.load()));
    o.Set("generation", static_cast<double>(w->last_generation.load(std::memory_order_relaxed)));
#define X(name, doc) o.Set(#name, static_cast<double>(w->stats.name.Get()));
    GALETTE_WORKER_COUNTERS(X)
#undef X
    // The kernel's own per-socket drop counters: frames that never reached the worker.
    if (w->fd >= 0) {
      xdp_statistics ks{};
      socklen_t len = sizeof ks;
      if (getsockopt(w->fd, SOL_XDP, XDP_STATISTICS, &ks, &len) == 0) {
        Napi::Object k = Napi::Object::New(env);
        k.Set("rxDropped", static_cast<double>(ks.rx_dropped));
        k.Set("rxInvalidDescs", static_cast<double>(ks.rx_invalid_descs));
        k.Set("txInvalidDescs", static_cast<double>(ks.tx_invalid_descs));
        k.Set("rxRingFull", static_cast<double>(ks.rx_ring_full));
        k.Set("rxFillRingEmpty", static_cast<double>(ks.rx_fill_ring_empty_descs));
        k.Set("txRingEmpty", static_cast<double>(ks.tx_ring_empty_descs));
        o.Set("kernel", k);
      }
    }
    {
      std::lock_guard<std::mutex> g(w->error_mutex);
      if (!w->error.empty()) {
        o.Set("error", w->error);
        o.Set("errno", w->error_errno);
      }
    }
    workers.Set(i, o);
  }
  out.Set("workers", workers);
  Napi::Array instances = Napi::Array::New(env);
  uint32_t k = 0;
  // Counters are per instance id for the pool's life: an instance kept across updates
  // keeps counting; only the current set is listed.
  for (uint32_t id : pool->instance_ids) {
    uint64_t calls = 0, ns = 0, variants[GALETTE_MAX_ACTIONS] = {};
    for (auto& w : pool->workers) {
      InstanceStats& s = w->instances[id];
      calls += s.calls.Get();
      ns += s.nanoseconds.Get();
      for (uint32_t v = 0; v < GALETTE_MAX_ACTIONS; v++) variants[v] += s.variants[v].Get();
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("id", id);
    o.Set("calls", static_cast<double>(calls));
    o.Set("nanoseconds", static_cast<double>(ns));
    Napi::Array va = Napi::Array::New(env, GALETTE_MAX_ACTIONS);
    for (uint32_t v = 0; v < GALETTE_MAX_ACTIONS; v++) va.Set(v, static_cast<double>(variants[v]));
    o.Set("variants", va);
    instances.Set(k++, o);
  }
  out.Set("instances", instances);
  return out;
}

void CleanupAll(void*) {
  // Environment teardown (process exit, worker_threads end): stop threads before the
  // memory they use goes away.
  std::vector<Pool*> pools(LivePools().begin(), LivePools().end());
  for (Pool* p : pools) {
    p->has_events = false;  // the env is going away; its TSFN is torn down by Node
    Teardown(p);
  }
}

}  // namespace

void RegisterPool(Napi::Env env, Napi::Object exports) {
  exports.Set("poolStart", Napi::Function::New(env, Start));
  exports.Set("poolStop", Napi::Function::New(env, Stop));
  exports.Set("poolReload", Napi::Function::New(env, Reload));
  exports.Set("poolUpdate", Napi::Function::New(env, Update));
  exports.Set("poolQuiesced", Napi::Function::New(env, QuiescedCall));
  exports.Set("poolStats", Napi::Function::New(env, Stats));
  napi_add_env_cleanup_hook(env, CleanupAll, nullptr);
}

}  // namespace galette
