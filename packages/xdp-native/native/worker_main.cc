// galette-nf-worker: runs native NF libraries on AF_XDP frames without privileges.
//
// The agent (addon, worker_pool.cc) owns the UMEM, the AF_XDP sockets and the XSKMAP; it
// starts this process with their fds, the shared counter region and a control socket.
// Before any NF library is loaded this process maps the rings, then drops to an
// unprivileged uid with no capabilities, sets no-new-privs, confines file access with
// Landlock (read-only: the NF library directories and the system library directories) and
// installs a seccomp filter. Worker threads add a stricter filter of their own: NF packet
// code may not open files at all. A crash or a forbidden system call kills this process;
// the agent restarts it and the next one returns the frames the dead one held (journal in
// the shared region) to the fill ring before it starts.
//
// The frame loop is the one of the in-process pool (pool_worker.cc): frame ownership,
// batching, the in-flight spin (worker_loop.h) and the per-batch table switch are the same,
// and so is the code taking one frame through the NFs (nf_hops.h); the instance tables
// (nf_table.h) arrive as control messages and are published to the threads with the same
// hazard scheme.
//
// Where the kernel maps a socket's rings only before bind (Linux 6.1), a restarted worker
// does not get the dead one's sockets: the agent replaces them (worker_pool.cc), and this
// process maps and binds the new ones as the first worker did.
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/landlock.h>
#include <poll.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "map_view.h"
#include "nf_hops.h"
#include "nf_table.h"
#include "worker_loop.h"
#include "worker_shm.h"
extern "C" {
#include "galette_trace.h"
}

extern "C" {
#include <bpf/bpf.h>
#include <linux/if_xdp.h>
#include <xdp/xsk.h>
}

#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)
#endif
#ifndef LANDLOCK_ACCESS_NET_BIND_TCP
#define LANDLOCK_ACCESS_NET_BIND_TCP (1ULL << 0)
#define LANDLOCK_ACCESS_NET_CONNECT_TCP (1ULL << 1)
#endif
#ifndef LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET
#define LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)
#define LANDLOCK_SCOPE_SIGNAL (1ULL << 1)
#endif

namespace galette {
namespace {

using namespace shm;

// ---- reporting: one JSON object per line on stdout, read by the agent ---------------------

std::mutex out_mutex;

std::string Json(const std::string& s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      o += '\\';
      o += static_cast<char>(c);
    } else if (c < 0x20) {
      char b[8];
      snprintf(b, sizeof b, "\\u%04x", c);
      o += b;
    } else {
      o += static_cast<char>(c);
    }
  }
  return o + "\"";
}

void Say(const std::string& json) {
  std::lock_guard<std::mutex> g(out_mutex);
  std::string line = json + "\n";
  size_t off = 0;
  while (off < line.size()) {
    ssize_t n = write(1, line.data() + off, line.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) _exit(3);  // the agent is gone
    off += static_cast<size_t>(n);
  }
}

[[noreturn]] void Fatal(const std::string& what, int err = 0) {
  std::string m = what;
  if (err) m += std::string(": ") + strerror(err);
  Say("{\"type\":\"fatal\",\"message\":" + Json(m) + ",\"errno\":" + std::to_string(err) + "}");
  _exit(2);
}

// ---- configuration -----------------------------------------------------------------------

struct Config {
  uint32_t workers = 1, frame_size = 4096, frame_count = 4096, ring_size = 2048, batch = 64;
  uint32_t ports = 1;
  // From the shared header (the agent knows the interfaces): RX queues served per port;
  // socket groups = their sum, port-major (see worker_shm.h).
  uint32_t queues[kMaxPorts] = {1, 0};
  uint32_t groups = 1;
  bool taps = false;  // one TAP fd per port follows the sockets: PASS goes to the host stack
  uint32_t poll_timeout_ms = 1000;
  bool busy_poll = false;
  uid_t uid = 65534;
  gid_t gid = 65534;
  std::vector<std::string> read_dirs;
  // "auto": keep CAP_BPF only when this kernel refuses bpf() on map fds without it.
  std::string keep_cap_bpf = "auto";
  // BPF queue map for packet-trace records (galette_trace.h); -1: tracing not wired
  int trace_fd = -1;
  // how long a bind waits for a queue a closed socket still holds (EBUSY)
  uint32_t bind_wait_ms = 3000;
};

uint32_t ParseU32(const char* s, const char* name) {
  char* end = nullptr;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (errno || !end || *end || v > 0xffffffffu) Fatal(std::string("bad value for ") + name + ": " + s);
  return static_cast<uint32_t>(v);
}

// --uid and --gid set their uid_t/gid_t fields through kU32Options.
static_assert(std::is_same<uid_t, uint32_t>::value && std::is_same<gid_t, uint32_t>::value, "uid_t/gid_t not u32");

// The options that take a number, and the field each sets.
constexpr struct {
  const char* flag;
  uint32_t Config::* field;
} kU32Options[] = {
    {"--workers", &Config::workers},
    {"--ports", &Config::ports},
    {"--frame-size", &Config::frame_size},
    {"--frame-count", &Config::frame_count},
    {"--ring-size", &Config::ring_size},
    {"--batch", &Config::batch},
    {"--poll-timeout-ms", &Config::poll_timeout_ms},
    {"--uid", &Config::uid},
    {"--gid", &Config::gid},
    {"--bind-wait-ms", &Config::bind_wait_ms},
};

Config ParseArgs(int argc, char** argv) {
  Config c;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) Fatal("missing value for " + a);
      return argv[++i];
    };
    const auto* numeric =
        std::find_if(std::begin(kU32Options), std::end(kU32Options), [&](const auto& o) { return a == o.flag; });
    if (numeric != std::end(kU32Options))
      c.*numeric->field = ParseU32(next(), numeric->flag);
    else if (a == "--taps")
      c.taps = true;
    else if (a == "--busy-poll")
      c.busy_poll = true;
    else if (a == "--read-dir")
      c.read_dirs.push_back(next());
    else if (a == "--keep-cap-bpf")
      c.keep_cap_bpf = next();
    else if (a == "--trace-fd")
      c.trace_fd = static_cast<int>(ParseU32(next(), "--trace-fd"));
    else
      Fatal("unknown argument " + a);
  }
  if (c.ports < 1 || c.ports > kMaxPorts) Fatal("--ports out of range");
  if (c.workers < 1 || c.workers > GALETTE_MAX_XSKS) Fatal("--workers out of range");
  if (c.batch < 1 || c.batch > kMaxBatch) Fatal("--batch out of range");
  // Frames are found by masking and dividing by the frame size, ring slots by masking.
  auto pow2 = [](uint32_t v) { return v && !(v & (v - 1)); };
  if (!pow2(c.frame_size) || c.frame_size < 2048 || c.frame_size > 4096) Fatal("--frame-size must be 2048 or 4096");
  if (!pow2(c.frame_count) || c.frame_count < 64) Fatal("--frame-count must be a power of two >= 64");
  if (!pow2(c.ring_size) || c.ring_size < 64) Fatal("--ring-size must be a power of two >= 64");
  if (c.uid == 0 || c.gid == 0) Fatal("refusing to run NF code as uid/gid 0");
  return c;
}

// ---- rings -------------------------------------------------------------------------------

struct Socket {
  int fd = -1;
  xsk_ring_cons rx{};
  xsk_ring_prod tx{};
};

void* MapRing(int fd, uint64_t pgoff, size_t len, const char* what, bool bound) {
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, static_cast<off_t>(pgoff));
  if (p == MAP_FAILED && errno == EBUSY && bound)
    Fatal(std::string("map ") + what + " of a bound AF_XDP socket (this kernel maps a socket's rings only before " +
              "bind, so a restarted worker cannot take over the pool's sockets; restart the pool)",
          errno);
  if (p == MAP_FAILED) Fatal(std::string("map ") + what, errno);
  return p;
}

// Attaches to a ring the kernel and an earlier worker may have used: the cached indices
// start from the shared ones (libxdp's convention: a producer's cached_cons is consumer + size).
template <typename Ring>
void AttachRing(Ring* r, void* map, const xdp_ring_offset& off, uint32_t size, bool producer) {
  r->mask = size - 1;
  r->size = size;
  r->producer = reinterpret_cast<uint32_t*>(static_cast<uint8_t*>(map) + off.producer);
  r->consumer = reinterpret_cast<uint32_t*>(static_cast<uint8_t*>(map) + off.consumer);
  r->flags = reinterpret_cast<uint32_t*>(static_cast<uint8_t*>(map) + off.flags);
  r->ring = static_cast<uint8_t*>(map) + off.desc;
  uint32_t prod = __atomic_load_n(r->producer, __ATOMIC_ACQUIRE);
  uint32_t cons = __atomic_load_n(r->consumer, __ATOMIC_ACQUIRE);
  r->cached_prod = prod;
  r->cached_cons = producer ? cons + size : cons;
}

// ---- process state -----------------------------------------------------------------------

struct Process;

struct Thread {
  uint32_t index = 0;
  Socket* socks[kMaxGroups] = {};  // this thread's socket in each group (port)
  uint32_t next_group = 0;         // round robin over the groups' RX rings
  ThreadShm* shm = nullptr;
  InstanceCounters* inst = nullptr;
  std::atomic<const InstanceTable*> holding{nullptr};
  bool tx_outstanding[kMaxGroups] = {};
  InFlightSpin spin;

  void Count(CounterIndex k, uint64_t n) { Add(&shm->counters[k], n); }
  void Run(Process* p);
  const InstanceTable* Enter(Process* p);
  void Leave() {
    holding.store(nullptr, std::memory_order_release);
    __atomic_store_n(&shm->holding, 0, __ATOMIC_RELEASE);
  }
  // kHopsDropped (counted), else the verdict's kind (TX, REFLECT or PASS) with `out` filled
  uint32_t Frame(Process* p, const InstanceTable* t, uint64_t addr, uint32_t len, xdp_desc* out);
  void KickTx(uint32_t g);
  bool AnyTxOutstanding(uint32_t groups) const {
    for (uint32_t g = 0; g < groups; g++)
      if (tx_outstanding[g]) return true;
    return false;
  }
};

struct Process {
  Config cfg;
  uint8_t* area = nullptr;
  size_t area_size = 0;
  void* shm = nullptr;
  Header* header = nullptr;
  std::vector<Socket> sockets;  // group-major: thread t's socket of group g = g * workers + t
  xsk_ring_prod fq[kMaxGroups]{};
  xsk_ring_cons cq[kMaxGroups]{};
  int tap_fd[kMaxPorts] = {-1, -1};  // the host stack's TAP device of each port (taps)
  std::mutex ring_lock;
  int64_t tx_in_flight_locked = 0;
  std::atomic<int64_t> tx_in_flight{0};
  int wake_fd = -1;
  std::atomic<bool> stop{false};
  std::vector<std::unique_ptr<Thread>> threads;
  std::atomic<InstanceTable*> current{nullptr};
  std::vector<InstanceTable*> retired;
  // frame_count / groups, set once main checked the layout: never 0
  uint32_t frames_per_group = 1;

  uint64_t FrameOf(uint64_t addr) const { return addr & ~static_cast<uint64_t>(cfg.frame_size - 1); }
  uint32_t PortOf(uint32_t g) const { return g < cfg.queues[0] ? 0 : 1; }
  // The group a frame leaving through `port` uses: that port's socket on the same queue
  // number as the frame came in on (or, with fewer queues there, a queue it has).
  uint32_t GroupOn(uint32_t port, uint32_t in_group) const {
    uint32_t q = in_group < cfg.queues[0] ? in_group : in_group - cfg.queues[0];
    return (port ? cfg.queues[0] : 0) + q % cfg.queues[port];
  }
  // The group whose fill ring a frame returns to (its share of the UMEM, see worker_shm.h).
  uint32_t HomeOf(uint64_t addr) const {
    uint64_t g = (addr / cfg.frame_size) / frames_per_group;
    return g < cfg.groups ? static_cast<uint32_t>(g) : cfg.groups - 1;
  }

  // As in pool.h's Pool::Recycle, with the journal: completions are copied to the journal before the
  // completion ring is released, and the fill ring is submitted last, so a death anywhere
  // in between leaves the frames findable (see RecoverFrames).
  // A frame may complete on another group's completion ring (the other port's); it
  // still returns to its own group's fill ring (HomeOf), so no fill ring runs dry.
  void Recycle(Journal* j, const uint64_t* dropped, uint32_t n_dropped, uint32_t sent, bool wait, bool batch_done) {
    std::unique_lock<std::mutex> lock(ring_lock, std::defer_lock);
    if (wait)
      lock.lock();
    else if (!lock.try_lock())
      return;
    const uint32_t groups = cfg.groups;
    uint32_t done_total = 0;
    for (uint32_t g = 0; g < groups; g++) {
      uint32_t cidx = 0;
      uint32_t done = xsk_ring_cons__peek(&cq[g], kMaxBatch, &cidx);
      j->cq_n[g] = done;
      if (!done) continue;
      for (uint32_t i = 0; i < done; i++) j->cq_addr[g][i] = FrameOf(*xsk_ring_cons__comp_addr(&cq[g], cidx + i));
      j->cq_start[g] = *cq[g].consumer;
      __atomic_store_n(&j->cq_valid[g], 1, __ATOMIC_RELEASE);
      xsk_ring_cons__release(&cq[g], done);
      done_total += done;
    }
    if (sent || done_total) {
      tx_in_flight_locked += static_cast<int64_t>(sent) - static_cast<int64_t>(done_total);
      tx_in_flight.store(tx_in_flight_locked, std::memory_order_relaxed);
    }
    // Per home group: the frames to put back on its fill ring.
    uint32_t count[kMaxGroups] = {};
    for (uint32_t g = 0; g < groups; g++)
      for (uint32_t i = 0; i < j->cq_n[g]; i++) count[HomeOf(j->cq_addr[g][i])]++;
    for (uint32_t i = 0; i < n_dropped; i++) count[HomeOf(dropped[i])]++;
    for (uint32_t h = 0; h < groups; h++) {
      if (!count[h]) continue;
      uint32_t fidx = 0;
      // Cannot fail: a fill ring holds frame_count entries and every frame is unique.
      while (xsk_ring_prod__reserve(&fq[h], count[h], &fidx) != count[h]) {
      }
      j->fq_start[h] = *fq[h].producer;
      __atomic_store_n(&j->fq_valid[h], 1, __ATOMIC_RELEASE);
      for (uint32_t g = 0; g < groups; g++)
        for (uint32_t i = 0; i < j->cq_n[g]; i++)
          if (HomeOf(j->cq_addr[g][i]) == h) *xsk_ring_prod__fill_addr(&fq[h], fidx++) = j->cq_addr[g][i];
      for (uint32_t i = 0; i < n_dropped; i++)
        if (HomeOf(dropped[i]) == h) *xsk_ring_prod__fill_addr(&fq[h], fidx++) = FrameOf(dropped[i]);
      xsk_ring_prod__submit(&fq[h], count[h]);
    }
    // Everything this thread held is in a ring now; clear the journal, fill flags last.
    if (batch_done) {
      for (uint32_t g = 0; g < groups; g++) __atomic_store_n(&j->tx_valid[g], 0, __ATOMIC_RELEASE);
      __atomic_store_n(&j->rx_valid, 0, __ATOMIC_RELEASE);
    }
    for (uint32_t g = 0; g < groups; g++) __atomic_store_n(&j->cq_valid[g], 0, __ATOMIC_RELEASE);
    for (uint32_t g = 0; g < groups; g++) __atomic_store_n(&j->fq_valid[g], 0, __ATOMIC_RELEASE);
  }
};

const InstanceTable* Thread::Enter(Process* p) {
  for (;;) {
    const InstanceTable* t = p->current.load();
    holding.store(t);
    __atomic_store_n(&shm->holding, t ? t->generation : 0, __ATOMIC_RELEASE);
    if (p->current.load() == t) {
      if (t) __atomic_store_n(&shm->last_generation, t->generation, __ATOMIC_RELAXED);
      return t;
    }
  }
}

// RunHops's hooks for this process: counters in the shared region, PASS to the port's TAP
// device when there is one, crash attribution, and a trace record per hop of a traced frame.
struct ProcessHops {
  Thread* t;
  const Process* p;
  uint32_t trace_frame;  // 0: not traced
  bool CanPass() const { return p->tap_fd[0] >= 0; }
  void Count(CounterIndex k, uint64_t n = 1) { t->Count(k, n); }
  // Crash attribution: the agent reads this after the process died.
  void Calling(uint32_t instance) { __atomic_store_n(&t->shm->current_instance, instance, __ATOMIC_RELAXED); }
  void Returned() { __atomic_store_n(&t->shm->current_instance, kNoInstance, __ATOMIC_RELAXED); }
  void CountCall(uint32_t instance, uint64_t ns) {
    InstanceCounters& is = t->inst[instance];
    Add(&is.calls, 1);
    Add(&is.nanoseconds, ns);
  }
  void CountVariant(uint32_t instance, uint32_t variant) { Add(&t->inst[instance].variants[variant], 1); }
  void Hopped(uint32_t instance, uint32_t variant, const galette_action& next, uint64_t now) {
    if (!trace_frame || p->cfg.trace_fd < 0) return;
    galette_trace_record r{};
    r.ts = now;
    r.frame = trace_frame;
    r.instance = instance;
    r.variant = variant;
    r.kind = next.kind;
    r.arg = next.arg;
    r.tier = GALETTE_TIER_USERLAND;
    // a full queue loses the record (the tracer reports the frame incomplete)
    bpf_map_update_elem(p->cfg.trace_fd, nullptr, &r, BPF_ANY);
  }
};

uint32_t Thread::Frame(Process* p, const InstanceTable* table, uint64_t addr, uint32_t len, xdp_desc* out) {
  uint8_t* base = p->area;
  uint64_t frame = p->FrameOf(addr);
  uint64_t offset = addr - frame;
  if (frame >= p->area_size) {
    Count(k_badMeta, 1);
    return kHopsDropped;
  }
  if (!table || offset < sizeof(galette_upcall_meta) || offset + len > p->cfg.frame_size) {
    Count(k_badMeta, 1);
    return kHopsDropped;
  }
  galette_upcall_meta meta;
  memcpy(&meta, base + addr - sizeof meta, sizeof meta);
  // A traced frame: XDP kept the trace mark in front of the upcall meta.
  uint32_t trace_frame = 0;
  if (meta.action & GALETTE_UPCALL_TRACED) {
    meta.action &= ~GALETTE_UPCALL_TRACED;
    galette_trace_mark mark;
    if (offset >= sizeof meta + sizeof mark) {
      memcpy(&mark, base + addr - sizeof meta - sizeof mark, sizeof mark);
      if (mark.magic == GALETTE_TRACE_MAGIC) trace_frame = mark.frame;
    }
  }
  ProcessHops hooks{this, p, trace_frame};
  return RunHops(table, meta, base, frame, p->cfg.frame_size, addr, len, out, hooks);
}

void Thread::KickTx(uint32_t g) {
  tx_outstanding[g] = false;
  for (uint32_t i = 0; i < kTxKickAttempts; i++) {
    Count(k_wakeups, 1);
    if (sendto(socks[g]->fd, nullptr, 0, MSG_DONTWAIT, nullptr, 0) >= 0) return;
    if (errno == EAGAIN || errno == EBUSY || errno == ENOBUFS) {
      tx_outstanding[g] = true;
      continue;
    }
    if (errno == ENETDOWN) return;
    Count(k_txErrors, 1);
    return;
  }
}

// Worker threads run NF packet code: on top of the process filter they may not open
// anything (a hostile NF reading /etc/shadow is killed here, not merely refused).
void RestrictThread() {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  if (!ctx) Fatal("seccomp_init for a worker thread");
  // No-new-privs is set already; libseccomp must not call prctl() for it here.
  if (seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0) != 0) Fatal("seccomp attribute for a worker thread");
  for (int nr : {SCMP_SYS(open), SCMP_SYS(openat), SCMP_SYS(openat2), SCMP_SYS(open_by_handle_at), SCMP_SYS(creat),
                 SCMP_SYS(memfd_create)})
    if (seccomp_rule_add(ctx, SCMP_ACT_KILL_PROCESS, nr, 0) != 0) Fatal("seccomp rule for a worker thread");
  int err = seccomp_load(ctx);
  seccomp_release(ctx);
  if (err) Fatal("load the worker thread seccomp filter", -err);
}

void Thread::Run(Process* p) {
  RestrictThread();
  __atomic_store_n(&shm->current_instance, kNoInstance, __ATOMIC_RELAXED);
  __atomic_store_n(&shm->state, kRunning, __ATOMIC_RELEASE);
  const uint32_t batch = p->cfg.batch;
  const uint32_t groups = p->cfg.groups;
  // main checked the layout: every index and modulus below relies on it
  if (groups == 0 || groups > kMaxGroups) Fatal("worker " + std::to_string(index) + ": no socket groups");
  Journal* j = &shm->journal;
  std::vector<uint64_t> dropped(batch);
  std::vector<xdp_desc> descs(batch);
  // frames to transmit, per group (port) they leave through
  std::vector<xdp_desc> out[kMaxGroups];
  for (uint32_t g = 0; g < groups; g++) out[g].resize(batch);
  const InstanceTable* table = nullptr;
  // Frames a previous worker left on these TX rings go out now.
  for (uint32_t g = 0; g < groups; g++) KickTx(g);
  while (!p->stop.load(std::memory_order_relaxed)) {
    if (p->current.load(std::memory_order_acquire) != table || !table) table = Enter(p);
    if (!table) {
      // A restarted worker runs nothing until the agent has sent it the instance table.
      Leave();
      timespec ms{0, 1000000};
      nanosleep(&ms, nullptr);
      continue;
    }
    uint32_t ridx = 0, n = 0, g_in = 0;
    for (uint32_t k = 0; k < groups && n == 0; k++) {
      g_in = (next_group + k) % groups;
      n = xsk_ring_cons__peek(&socks[g_in]->rx, batch, &ridx);
    }
    next_group = (g_in + 1) % groups;
    if (n == 0) {
      for (uint32_t g = 0; g < groups; g++)
        if (tx_outstanding[g]) KickTx(g);
      p->Recycle(j, nullptr, 0, 0, false, false);
      if (p->cfg.busy_poll) {
        for (uint32_t g = 0; g < groups; g++)
          if (xsk_ring_prod__needs_wakeup(&p->fq[g])) {
            Count(k_wakeups, 1);
            recvfrom(socks[g]->fd, nullptr, 0, MSG_DONTWAIT, nullptr, nullptr);
          }
        continue;
      }
      if (spin.KeepLooping(p->tx_in_flight.load(std::memory_order_relaxed))) continue;
      Leave();
      table = nullptr;
      pollfd fds[kMaxGroups + 1];
      for (uint32_t g = 0; g < groups; g++) fds[g] = {socks[g]->fd, POLLIN, 0};
      fds[groups] = {p->wake_fd, POLLIN, 0};
      Count(k_wakeups, 1);
      int r = poll(fds, groups + 1, AnyTxOutstanding(groups) ? 1 : static_cast<int>(p->cfg.poll_timeout_ms));
      if (r < 0 && errno != EINTR) Fatal("worker " + std::to_string(index) + ": poll on AF_XDP socket", errno);
      continue;
    }
    Socket* in = socks[g_in];
    // The batch leaves the RX ring before any NF runs: a frame that crashes its NF is not
    // handed to the next worker again. The journal names the frames first.
    for (uint32_t i = 0; i < n; i++) {
      descs[i] = *xsk_ring_cons__rx_desc(&in->rx, ridx + i);
      j->rx_addr[i] = descs[i].addr;
    }
    j->rx_start = *in->rx.consumer;
    j->rx_n = n;
    j->rx_group = g_in;
    __atomic_store_n(&j->rx_valid, 1, __ATOMIC_RELEASE);
    xsk_ring_cons__release(&in->rx, n);
    Count(k_rx, n);
    Add(&shm->group_rx[g_in], n);
    Count(k_batches, 1);
    uint32_t n_dropped = 0, n_sent = 0;
    uint32_t n_tx[kMaxGroups] = {};
    // tx leaves through the other port of two; reflect (and tx on one port) through this one
    const uint32_t port_in = p->PortOf(g_in);
    const uint32_t g_other = p->cfg.ports > 1 ? p->GroupOn(1 - port_in, g_in) : g_in;
    for (uint32_t i = 0; i < n; i++) {
      xdp_desc d{};
      uint32_t kind = Frame(p, table, descs[i].addr, descs[i].len, &d);
      if (kind == 0) {
        dropped[n_dropped++] = descs[i].addr;
        continue;
      }
      if (kind == GALETTE_ACT_PASS) {
        // The host stack gets a copy (one write per frame); the frame goes back to the fill ring.
        if (write(p->tap_fd[port_in], p->area + d.addr, d.len) == static_cast<ssize_t>(d.len))
          Count(k_passed, 1);
        else
          Count(k_txErrors, 1);
        dropped[n_dropped++] = descs[i].addr;
        continue;
      }
      uint32_t g_out = kind == GALETTE_ACT_TX ? g_other : g_in;
      out[g_out][n_tx[g_out]++] = d;
    }
    for (uint32_t g = 0; g < groups; g++) {
      if (!n_tx[g]) continue;
      Socket* s = socks[g];
      uint32_t tidx = 0;
      uint32_t attempt = 0;
      while (xsk_ring_prod__reserve(&s->tx, n_tx[g], &tidx) != n_tx[g] && attempt++ < kTxKickAttempts) KickTx(g);
      if (attempt > kTxKickAttempts) {
        Count(k_txRingFull, n_tx[g]);
        for (uint32_t i = 0; i < n_tx[g]; i++) dropped[n_dropped++] = out[g][i].addr;
        continue;
      }
      for (uint32_t i = 0; i < n_tx[g]; i++) j->tx_addr[g][i] = out[g][i].addr;
      j->tx_n[g] = n_tx[g];
      j->tx_start[g] = *s->tx.producer;
      __atomic_store_n(&j->tx_valid[g], 1, __ATOMIC_RELEASE);
      for (uint32_t i = 0; i < n_tx[g]; i++) *xsk_ring_prod__tx_desc(&s->tx, tidx + i) = out[g][i];
      xsk_ring_prod__submit(&s->tx, n_tx[g]);
      Count(k_tx, n_tx[g]);
      n_sent += n_tx[g];
      if (xsk_ring_prod__needs_wakeup(&s->tx)) KickTx(g);
    }
    p->Recycle(j, dropped.data(), n_dropped, n_sent, true, true);
  }
  Leave();
  __atomic_store_n(&shm->state, kStopped, __ATOMIC_RELEASE);
}

// ---- frame recovery after a dead worker --------------------------------------------------

bool Moved(const uint32_t* index, uint32_t start) { return __atomic_load_n(index, __ATOMIC_ACQUIRE) != start; }

// Finds the frames the previous worker process held when it died (taken from a ring and
// not yet put on another) from its journals and the shared ring indices, and puts them
// on the fill ring. Runs before any thread starts. Each journal step was recorded before
// the ring index it guards moved, so "index moved" tells whether the step happened.
// The journal is the dead worker's memory, so it is checked: a frame is only returned
// once, only when aligned, inside the UMEM, and not visible in any ring.
// libxdp's order: a group's first socket binds with the UMEM (XDP_COPY, need-wakeup), the
// others of the group share it (same device and queue). bound_sockets counts in order, so
// a worker that dies half-way leaves the next one the rest.
void BindSockets(Process* p, uint32_t from) {
  const Config& c = p->cfg;
  for (uint32_t i = from; i < c.workers * c.groups; i++) {
    const uint32_t g = i / c.workers;
    const uint32_t port = g < c.queues[0] ? 0 : 1;
    sockaddr_xdp sa{};
    sa.sxdp_family = AF_XDP;
    sa.sxdp_ifindex = p->header->ifindex[port];
    sa.sxdp_queue_id = port ? g - c.queues[0] : g;
    if (i % c.workers == 0) {
      sa.sxdp_flags = static_cast<uint16_t>(p->header->bind_flags);
    } else {
      sa.sxdp_flags = XDP_SHARED_UMEM;
      sa.sxdp_shared_umem_fd = static_cast<uint32_t>(p->sockets[g * c.workers].fd);
    }
    if (!sa.sxdp_ifindex) Fatal("shared header: no ifindex for port " + std::to_string(port));
    // A queue a closed socket held stays busy until the kernel released that socket, which
    // waits for every frame it transmitted to be freed (replaced sockets: at a slow receiver,
    // that can take seconds): retry, bounded (--bind-wait-ms).
    for (uint32_t tries = 0; bind(p->sockets[i].fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0; tries++) {
      if (errno != EBUSY || tries >= c.bind_wait_ms / 20)
        Fatal("bind AF_XDP socket " + std::to_string(i) + " to ifindex " + std::to_string(sa.sxdp_ifindex) + " queue " +
                  std::to_string(sa.sxdp_queue_id),
              errno);
      usleep(20000);
    }
    __atomic_store_n(&p->header->bound_sockets, i + 1, __ATOMIC_RELEASE);
  }
}

uint64_t RecoverFrames(Process* p) {
  const Config& c = p->cfg;
  std::vector<uint8_t> seen(c.frame_count, 0);
  auto slot = [&](uint64_t addr) -> int64_t {
    uint64_t f = p->FrameOf(addr);
    if (f >= p->area_size) return -1;
    return static_cast<int64_t>(f / c.frame_size);
  };
  // Frames visible in a ring are owned by the ring (or the kernel). `r`: an xsk_ring_prod
  // or xsk_ring_cons (the same fields), read through the shared indices.
  auto mark = [&](const auto& r, bool desc) {
    uint32_t cons = *r.consumer, prod = *r.producer;
    for (uint32_t i = cons; i != prod && i - cons <= r.size; i++) {
      uint64_t a = desc ? static_cast<const xdp_desc*>(r.ring)[i & r.mask].addr
                        : static_cast<const uint64_t*>(r.ring)[i & r.mask];
      int64_t s = slot(a);
      if (s >= 0) seen[s] = 1;
    }
  };
  for (uint32_t g = 0; g < c.groups; g++) {
    mark(p->fq[g], false);
    mark(p->cq[g], false);
  }
  for (Socket& s : p->sockets) {
    mark(s.rx, true);
    mark(s.tx, true);
  }
  std::vector<uint64_t> lost;
  auto take = [&](uint64_t addr) {
    int64_t s = slot(addr);
    if (s < 0 || seen[s]) return;
    seen[s] = 1;
    lost.push_back(static_cast<uint64_t>(s) * c.frame_size);
  };
  ThreadShm* threads = Threads(p->shm);
  for (uint32_t t = 0; t < c.workers; t++) {
    Journal* j = &threads[t].journal;
    // A frame a step put on its home group's fill ring is there (or with the kernel)
    // once that fill producer moved; before that it died with the worker.
    bool fq_submitted[kMaxGroups] = {};
    for (uint32_t g = 0; g < c.groups; g++)
      fq_submitted[g] = j->fq_valid[g] && Moved(p->fq[g].producer, j->fq_start[g]);
    auto take_unless_filled = [&](uint64_t addr) {
      if (!fq_submitted[p->HomeOf(addr)]) take(addr);
    };
    if (j->rx_valid && j->rx_group < c.groups &&
        Moved(p->sockets[j->rx_group * c.workers + t].rx.consumer, j->rx_start)) {
      std::set<uint64_t> sent;
      for (uint32_t g = 0; g < c.groups; g++)
        if (j->tx_valid[g] && Moved(p->sockets[g * c.workers + t].tx.producer, j->tx_start[g]))
          for (uint32_t i = 0; i < j->tx_n[g] && i < kMaxBatch; i++) sent.insert(p->FrameOf(j->tx_addr[g][i]));
      for (uint32_t i = 0; i < j->rx_n && i < kMaxBatch; i++)
        if (!sent.count(p->FrameOf(j->rx_addr[i]))) take_unless_filled(j->rx_addr[i]);
    }
    for (uint32_t g = 0; g < c.groups; g++)
      if (j->cq_valid[g] && Moved(p->cq[g].consumer, j->cq_start[g]))
        for (uint32_t i = 0; i < j->cq_n[g] && i < kMaxBatch; i++) take_unless_filled(j->cq_addr[g][i]);
    memset(j, 0, offsetof(Journal, rx_addr));
  }
  for (uint32_t h = 0; h < c.groups; h++) {
    std::vector<uint64_t> home;
    for (uint64_t a : lost)
      if (p->HomeOf(a) == h) home.push_back(a);
    if (home.empty()) continue;
    uint32_t fidx = 0;
    if (xsk_ring_prod__reserve(&p->fq[h], static_cast<uint32_t>(home.size()), &fidx) != home.size())
      Fatal("fill ring has no room for " + std::to_string(home.size()) + " recovered frames");
    for (uint64_t a : home) *xsk_ring_prod__fill_addr(&p->fq[h], fidx++) = a;
    xsk_ring_prod__submit(&p->fq[h], static_cast<uint32_t>(home.size()));
  }
  if (!lost.empty()) Add(&p->header->crash_recovered, lost.size());
  return lost.size();
}

// ---- privileges --------------------------------------------------------------------------

int Capset(uint64_t keep) {
  __user_cap_header_struct h{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct d[2] = {};
  d[0].effective = d[0].permitted = static_cast<uint32_t>(keep);
  d[1].effective = d[1].permitted = static_cast<uint32_t>(keep >> 32);
  return static_cast<int>(syscall(SYS_capset, &h, d));
}

void DropUser(const Config& c, bool keep_bpf) {
  // Clearing the bounding set needs CAP_SETPCAP, which the agent's unit does not grant:
  // then it stays (no-new-privs and the seccomp filter's ban on execve already mean it can
  // never give a capability back).
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct have[2] = {};
  if (syscall(SYS_capget, &hdr, have) != 0) Fatal("read capabilities", errno);
  if (have[0].effective & (1u << CAP_SETPCAP)) {
    for (int cap = 0; cap <= 63; cap++) {
      if (keep_bpf && cap == CAP_BPF) continue;
      if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL)
        Fatal("drop capability from the bounding set", errno);
    }
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
    Fatal("clear ambient capabilities", errno);
  if (keep_bpf && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) Fatal("keep capabilities across setuid", errno);
  if (setgroups(0, nullptr) != 0) Fatal("drop supplementary groups", errno);
  if (setresgid(c.gid, c.gid, c.gid) != 0) Fatal("setresgid " + std::to_string(c.gid), errno);
  if (setresuid(c.uid, c.uid, c.uid) != 0) Fatal("setresuid " + std::to_string(c.uid), errno);
  if (Capset(keep_bpf ? (1ull << CAP_BPF) : 0) != 0) Fatal("drop capabilities", errno);
  if (keep_bpf && prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0) Fatal("reset keep-caps", errno);
  // Regaining root must be impossible.
  if (setresuid(0, 0, 0) == 0) Fatal("could still become root after dropping privileges");
}

// Whether this kernel lets a process without capabilities use bpf() on a map fd it holds
// (kernels before 6.5 refuse the whole syscall when kernel.unprivileged_bpf_disabled is set).
bool UnprivilegedMapAccessWorks(const Config& c) {
  int fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "galette_probe", 4, 4, 1, nullptr);
  if (fd < 0) Fatal("create the bpf() probe map", errno);
  pid_t child = fork();
  if (child < 0) Fatal("fork the bpf() probe", errno);
  if (child == 0) {
    if (setgroups(0, nullptr) || setresgid(c.gid, c.gid, c.gid) || setresuid(c.uid, c.uid, c.uid) || Capset(0))
      _exit(2);
    uint32_t k = 0, v = 0;
    _exit(bpf_map_lookup_elem(fd, &k, &v) == 0 ? 0 : 1);
  }
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  close(fd);
  if (!WIFEXITED(status) || WEXITSTATUS(status) == 2) Fatal("the bpf() probe could not drop privileges");
  return WEXITSTATUS(status) == 0;
}

int LandlockAbi() {
  long abi = syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
  return abi < 0 ? 0 : static_cast<int>(abi);
}

// Read-only access to the NF library directories and what the dynamic loader needs;
// nothing else, no writes anywhere, no TCP, no signals or abstract sockets outside.
void Confine(const Config& c) {
  int abi = LandlockAbi();
  if (abi < 1) Fatal("Landlock is not available on this kernel (needed to confine NF code)");
  uint64_t fs = (1ULL << 13) - 1;  // ABI 1
  if (abi >= 2) fs |= LANDLOCK_ACCESS_FS_REFER;
  if (abi >= 3) fs |= LANDLOCK_ACCESS_FS_TRUNCATE;
  if (abi >= 5) fs |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
  struct {
    uint64_t handled_access_fs, handled_access_net, scoped;
  } attr{fs, abi >= 4 ? (LANDLOCK_ACCESS_NET_BIND_TCP | LANDLOCK_ACCESS_NET_CONNECT_TCP) : 0,
         abi >= 6 ? (LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | LANDLOCK_SCOPE_SIGNAL) : 0};
  size_t attr_size = abi >= 6 ? 24 : abi >= 4 ? 16 : 8;
  int rs = static_cast<int>(syscall(SYS_landlock_create_ruleset, &attr, attr_size, 0));
  if (rs < 0) Fatal("create the Landlock ruleset", errno);
  const uint64_t read = LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR;
  std::vector<std::string> dirs = c.read_dirs;
  for (const char* sys : {"/usr/lib", "/lib", "/lib64", "/usr/lib64", "/etc/ld.so.cache"}) dirs.push_back(sys);
  for (const std::string& d : dirs) {
    int fd = open(d.c_str(), O_PATH | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT) continue;
      Fatal("open " + d + " for the Landlock rule", errno);
    }
    struct stat st;
    fstat(fd, &st);
    landlock_path_beneath_attr pb{};
    pb.allowed_access = S_ISDIR(st.st_mode) ? read : LANDLOCK_ACCESS_FS_READ_FILE;
    pb.parent_fd = fd;
    if (syscall(SYS_landlock_add_rule, rs, LANDLOCK_RULE_PATH_BENEATH, &pb, 0) != 0)
      Fatal("add Landlock rule for " + d, errno);
    close(fd);
  }
  if (syscall(SYS_landlock_restrict_self, rs, 0) != 0) Fatal("enforce the Landlock ruleset", errno);
  close(rs);
}

// What the whole process may do once NF code can run: the frame loop (poll, sendto and
// recvfrom on its AF_XDP sockets), the control channel (recvmsg), threads, memory,
// dlopen (read-only opens; Landlock decides where), and map access: bpf() with the
// element commands only. Anything else (socket, connect, execve, ptrace, kill of other
// processes, bpf(PROG_LOAD), ...) kills the process.
void InstallSeccomp() {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
  if (!ctx) Fatal("seccomp_init");
  auto allow = [&](int nr) {
    if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0) != 0) Fatal("seccomp rule " + std::to_string(nr));
  };
  for (int nr : {SCMP_SYS(read),
                 SCMP_SYS(write),
                 SCMP_SYS(close),
                 SCMP_SYS(fstat),
                 SCMP_SYS(newfstatat),
                 SCMP_SYS(statx),
                 SCMP_SYS(lseek),
                 SCMP_SYS(pread64),
                 SCMP_SYS(mmap),
                 SCMP_SYS(munmap),
                 SCMP_SYS(mprotect),
                 SCMP_SYS(madvise),
                 SCMP_SYS(brk),
                 SCMP_SYS(mremap),
                 SCMP_SYS(futex),
                 SCMP_SYS(set_robust_list),
                 SCMP_SYS(rseq),
                 SCMP_SYS(rt_sigprocmask),
                 SCMP_SYS(rt_sigaction),
                 SCMP_SYS(rt_sigreturn),
                 SCMP_SYS(sigaltstack),
                 SCMP_SYS(exit),
                 SCMP_SYS(exit_group),
                 SCMP_SYS(gettid),
                 SCMP_SYS(getpid),
                 SCMP_SYS(getuid),
                 SCMP_SYS(poll),
                 SCMP_SYS(ppoll),
                 SCMP_SYS(recvmsg),
                 SCMP_SYS(sendto),
                 SCMP_SYS(recvfrom),
                 SCMP_SYS(getrandom),
                 SCMP_SYS(clock_gettime),
                 SCMP_SYS(clock_nanosleep),
                 SCMP_SYS(nanosleep),
                 SCMP_SYS(sched_yield),
                 SCMP_SYS(sched_getaffinity),
                 SCMP_SYS(seccomp)})
    allow(nr);
  auto rule = [&](uint32_t action, int nr, std::initializer_list<scmp_arg_cmp> args) {
    if (seccomp_rule_add_array(ctx, action, nr, static_cast<unsigned>(args.size()), args.begin()) != 0)
      Fatal("seccomp rule " + std::to_string(nr));
  };
  // Read-only opens (dlopen); Landlock limits where.
  const uint64_t bad_open = O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND | __O_TMPFILE;
  rule(SCMP_ACT_ALLOW, SCMP_SYS(openat), {SCMP_A2(SCMP_CMP_MASKED_EQ, bad_open, 0)});
  // Threads only (CLONE_THREAD); clone3's flags are out of seccomp's reach: glibc falls back.
  rule(SCMP_ACT_ALLOW, SCMP_SYS(clone), {SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD)});
  rule(SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), {});
  // abort() signals itself; nobody else.
  rule(SCMP_ACT_ALLOW, SCMP_SYS(tgkill), {SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(getpid()))});
  // getrlimit only (glibc's thread stacks), never setting one.
  rule(SCMP_ACT_ALLOW, SCMP_SYS(prlimit64), {SCMP_A2(SCMP_CMP_EQ, 0)});
  for (int cmd : {BPF_MAP_LOOKUP_ELEM, BPF_MAP_UPDATE_ELEM, BPF_MAP_DELETE_ELEM, BPF_MAP_GET_NEXT_KEY,
                  BPF_MAP_LOOKUP_AND_DELETE_ELEM})
    rule(SCMP_ACT_ALLOW, SCMP_SYS(bpf), {SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(cmd))});
  int err = seccomp_load(ctx);
  seccomp_release(ctx);
  if (err) Fatal("load the seccomp filter", -err);
}

// ---- control channel ---------------------------------------------------------------------

struct Pending {
  uint32_t id;
  galette_action actions[GALETTE_MAX_ACTIONS];
  std::string library;
  std::vector<int> fds;
  std::vector<MsgMap> maps;  // one per fd
};

std::string ErrnoName(int err) {
  const char* n = strerrorname_np(err);
  return n ? n : "E" + std::to_string(err);
}

void Reject(uint64_t generation, int err, int64_t instance, const std::string& library, const std::string& message) {
  std::string j = "{\"type\":\"rejected\",\"generation\":" + std::to_string(generation) +
                  ",\"errno\":" + std::to_string(err) + ",\"code\":" + Json(ErrnoName(err)) +
                  ",\"message\":" + Json(message);
  if (instance >= 0) j += ",\"instance\":" + std::to_string(instance) + ",\"library\":" + Json(library);
  Say(j + "}");
}

// Loads one instance; returns an error message (empty: fine). `err` gets the errno.
std::string Load(Pending& pi, LoadedInstance* li, int* err) {
  li->id = pi.id;
  li->map_fds.swap(pi.fds);
  for (size_t i = 0; i < li->map_fds.size(); i++) {
    const MsgMap& m = pi.maps[i];
    li->maps.push_back(ViewMap(li->map_fds[i], m.type, m.flags, m.value_size, m.max_entries));
  }
  if (pi.library.empty()) return "";
  dlerror();
  li->handle = dlopen(pi.library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!li->handle) {
    const char* why = dlerror();
    *err = ENOENT;
    return std::string("dlopen failed: ") + (why ? why : "unknown error");
  }
  auto version = reinterpret_cast<uint32_t (*)()>(dlsym(li->handle, "galette_nf_abi_version"));
  if (!version) {
    *err = ENOENT;
    return "does not export galette_nf_abi_version";
  }
  uint32_t v = version();
  if (v != GALETTE_ABI_VERSION) {
    *err = EPROTO;
    return "ABI version " + std::to_string(v) + ", this worker speaks " + std::to_string(GALETTE_ABI_VERSION);
  }
  li->packet = reinterpret_cast<NfPacketFn>(dlsym(li->handle, "galette_nf_packet"));
  if (!li->packet) {
    *err = ENOENT;
    return "does not export galette_nf_packet";
  }
  li->packet_mapped = reinterpret_cast<NfPacketMappedFn>(dlsym(li->handle, "galette_nf_packet_mapped"));
  return "";
}

void Reclaim(Process* p) {
  std::vector<InstanceTable*> keep;
  for (InstanceTable* t : p->retired) {
    bool held = false;
    for (auto& th : p->threads) held = held || th->holding.load() == t;
    if (held)
      keep.push_back(t);
    else
      delete t;
  }
  p->retired.swap(keep);
  uint64_t oldest = 0;
  for (InstanceTable* t : p->retired)
    if (!oldest || t->generation < oldest) oldest = t->generation;
  __atomic_store_n(&p->header->oldest_retired, oldest, __ATOMIC_RELEASE);
  __atomic_store_n(&p->header->retired_count, static_cast<uint32_t>(p->retired.size()), __ATOMIC_RELEASE);
}

void Commit(Process* p, std::vector<Pending>& pending, const MsgCommit& m) {
  if (m.count != pending.size()) {
    Reject(m.generation, EPROTO, -1, "",
           "update announced " + std::to_string(m.count) + " instances, got " + std::to_string(pending.size()));
    return;
  }
  auto t = std::make_unique<InstanceTable>();
  t->generation = m.generation;
  for (Pending& pi : pending) {
    auto li = std::make_shared<LoadedInstance>();
    int err = 0;
    std::string why = Load(pi, li.get(), &err);
    if (!why.empty()) {
      Reject(m.generation, err, pi.id, pi.library,
             "NF instance " + std::to_string(pi.id) + " library " + pi.library + ": " + why);
      return;  // li and the table free what was loaded so far
    }
    t->known[li->id] = true;
    memcpy(t->actions[li->id], pi.actions, sizeof pi.actions);
    if (li->packet) t->nf[li->id] = NfEntry{li->packet, li->MapFds(), li->packet_mapped, li->Maps()};
    t->owners.push_back(std::move(li));
  }
  InstanceTable* old = p->current.exchange(t.release());
  if (old) p->retired.push_back(old);
  __atomic_store_n(&p->header->published, m.generation, __ATOMIC_RELEASE);
  // Threads asleep hold nothing and pick the table up when they wake.
  Reclaim(p);
  Say("{\"type\":\"published\",\"generation\":" + std::to_string(m.generation) + "}");
}

void ControlLoop(Process* p) {
  std::vector<Pending> pending;
  std::vector<uint8_t> buf(sizeof(MsgInstance) + kMaxLibraryPath + 16);
  for (;;) {
    pollfd pfd{kFdControl, POLLIN, 0};
    int r = poll(&pfd, 1, p->retired.empty() ? -1 : 2);
    if (r < 0 && errno != EINTR) Fatal("poll the control socket", errno);
    Reclaim(p);
    if (r <= 0) continue;
    iovec iov{buf.data(), buf.size()};
    alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * GALETTE_MAX_MAPS)];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf;
    msg.msg_controllen = sizeof cbuf;
    ssize_t n = recvmsg(kFdControl, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the agent closed the channel: stop
    std::vector<int> fds;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < k; i++) {
        int fd;
        memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        fds.push_back(fd);
      }
    }
    if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) Fatal("truncated control message");
    uint32_t type = 0;
    if (static_cast<size_t>(n) >= sizeof type) memcpy(&type, buf.data(), sizeof type);
    if (type == kMsgInstance && static_cast<size_t>(n) >= sizeof(MsgInstance)) {
      MsgInstance mi;
      memcpy(&mi, buf.data(), sizeof mi);
      if (mi.id >= GALETTE_MAX_INSTANCES || mi.map_count != fds.size() || mi.map_count > GALETTE_MAX_MAPS ||
          mi.library_len > kMaxLibraryPath || sizeof mi + mi.library_len != static_cast<size_t>(n))
        Fatal("malformed instance message");
      Pending pi;
      pi.id = mi.id;
      memcpy(pi.actions, mi.actions, sizeof pi.actions);
      pi.library.assign(reinterpret_cast<const char*>(buf.data()) + sizeof mi, mi.library_len);
      pi.maps.assign(mi.maps, mi.maps + fds.size());
      pi.fds = std::move(fds);
      pending.push_back(std::move(pi));
    } else if (type == kMsgCommit && static_cast<size_t>(n) == sizeof(MsgCommit)) {
      MsgCommit mc;
      memcpy(&mc, buf.data(), sizeof mc);
      Commit(p, pending, mc);
      for (Pending& pi : pending)
        for (int fd : pi.fds) close(fd);
      pending.clear();
    } else {
      Fatal("unknown control message");
    }
  }
}

}  // namespace
}  // namespace galette

int main(int argc, char** argv) {
  using namespace galette;
  using namespace galette::shm;
  signal(SIGPIPE, SIG_IGN);
  const pid_t agent = getppid();
  auto p = std::make_unique<Process>();
  p->cfg = ParseArgs(argc, argv);
  const Config& c = p->cfg;

  // Everything that needs privileges or opens something, first.
  p->area_size = static_cast<size_t>(c.frame_count) * c.frame_size;
  void* area = mmap(nullptr, p->area_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, kFdUmem, 0);
  if (area == MAP_FAILED) Fatal("map the UMEM", errno);
  p->area = static_cast<uint8_t*>(area);
  size_t shm_size = RegionSize(c.workers);
  p->shm = mmap(nullptr, shm_size, PROT_READ | PROT_WRITE, MAP_SHARED, kFdShm, 0);
  if (p->shm == MAP_FAILED) Fatal("map the shared counters", errno);
  p->header = static_cast<Header*>(p->shm);
  if (p->header->magic != kMagic || p->header->version != kVersion || p->header->workers != c.workers ||
      p->header->ports != c.ports || p->header->frame_count != c.frame_count || p->header->frame_size != c.frame_size)
    Fatal("shared counter region does not match this worker");
  // The queue layout, checked: every socket index below derives from it.
  p->cfg.groups = 0;
  for (uint32_t port = 0; port < kMaxPorts; port++) {
    uint32_t q = port < c.ports ? p->header->queues[port] : 0;
    if (port < c.ports && (q < 1 || q > kMaxQueues))
      Fatal("shared header: bad queue count for port " + std::to_string(port));
    p->cfg.queues[port] = q;
    p->cfg.groups += q;
  }
  // groups >= 1 (ports >= 1, each with >= 1 queue), said again for the divisions below
  if (c.groups == 0 || p->header->groups != c.groups || c.workers * c.groups > GALETTE_MAX_XSKS ||
      c.frame_count / c.groups == 0)
    Fatal("shared header: " + std::to_string(c.groups) + " socket groups do not fit this worker");
  p->frames_per_group = c.frame_count / c.groups;
  p->sockets.resize(c.workers * c.groups);
  // Map every ring first, then bind the sockets not bound yet (by an earlier worker).
  const uint32_t bound = __atomic_load_n(&p->header->bound_sockets, __ATOMIC_ACQUIRE);
  if (bound > c.workers * c.groups) Fatal("shared header: more sockets bound than this worker has");
  for (uint32_t i = 0; i < c.workers * c.groups; i++) {
    Socket& s = p->sockets[i];
    s.fd = kFdFirstSocket + static_cast<int>(i);
    xdp_mmap_offsets off{};
    socklen_t len = sizeof off;
    if (getsockopt(s.fd, SOL_XDP, XDP_MMAP_OFFSETS, &off, &len) != 0)
      Fatal("read ring offsets of AF_XDP socket " + std::to_string(i), errno);
    const bool was_bound = i < bound;
    void* rx = MapRing(s.fd, XDP_PGOFF_RX_RING, off.rx.desc + c.ring_size * sizeof(xdp_desc), "RX ring", was_bound);
    void* tx = MapRing(s.fd, XDP_PGOFF_TX_RING, off.tx.desc + c.ring_size * sizeof(xdp_desc), "TX ring", was_bound);
    AttachRing(&s.rx, rx, off.rx, c.ring_size, false);
    AttachRing(&s.tx, tx, off.tx, c.ring_size, true);
    if (i % c.workers == 0) {
      // Shared UMEM: a group's fill and completion rings belong to its first socket.
      uint32_t g = i / c.workers;
      void* fr = MapRing(s.fd, XDP_UMEM_PGOFF_FILL_RING, off.fr.desc + c.frame_count * sizeof(uint64_t), "fill ring",
                         was_bound);
      void* cr = MapRing(s.fd, XDP_UMEM_PGOFF_COMPLETION_RING, off.cr.desc + c.frame_count * sizeof(uint64_t),
                         "completion ring", was_bound);
      AttachRing(&p->fq[g], fr, off.fr, c.frame_count, true);
      AttachRing(&p->cq[g], cr, off.cr, c.frame_count, false);
    }
  }
  BindSockets(p.get(), bound);
  if (c.taps)
    for (uint32_t port = 0; port < c.ports; port++)
      p->tap_fd[port] = kFdFirstSocket + static_cast<int>(c.workers * c.groups + port);
  p->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (p->wake_fd < 0) Fatal("create the wake-up eventfd", errno);

  bool keep_bpf = c.keep_cap_bpf == "yes" || (c.keep_cap_bpf == "auto" && !UnprivilegedMapAccessWorks(c));
  DropUser(c, keep_bpf);
  // After setresuid (which clears it): die with the agent.
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) Fatal("set the parent-death signal", errno);
  if (getppid() != agent) Fatal("the agent is gone");
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) Fatal("set no-new-privs", errno);
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) Fatal("clear dumpable", errno);
  Confine(c);
  InstallSeccomp();

  // Only now: frames the previous worker held, then the threads, then NF libraries.
  uint64_t recovered = RecoverFrames(p.get());
  __atomic_store_n(&p->header->keeps_cap_bpf, keep_bpf ? 1 : 0, __ATOMIC_RELAXED);
  __atomic_store_n(&p->header->retired_count, 0, __ATOMIC_RELAXED);
  __atomic_store_n(&p->header->oldest_retired, 0, __ATOMIC_RELAXED);
  __atomic_store_n(&p->header->worker_pid, static_cast<uint64_t>(getpid()), __ATOMIC_RELAXED);
  ThreadShm* threads = Threads(p->shm);
  for (uint32_t i = 0; i < c.workers; i++) {
    auto t = std::make_unique<Thread>();
    t->index = i;
    for (uint32_t g = 0; g < c.groups; g++) t->socks[g] = &p->sockets[g * c.workers + i];
    t->shm = &threads[i];
    t->inst = Instances(p->shm, c.workers, i);
    __atomic_store_n(&t->shm->holding, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&t->shm->state, kStarting, __ATOMIC_RELEASE);
    p->threads.push_back(std::move(t));
  }
  for (auto& t : p->threads) {
    Thread* tp = t.get();
    Process* pp = p.get();
    std::thread([tp, pp] { tp->Run(pp); }).detach();
  }
  // Ready means every thread runs (and has its own filter).
  for (int i = 0; i < 1000; i++) {
    bool all = true;
    for (uint32_t k = 0; k < c.workers; k++)
      all = all && __atomic_load_n(&threads[k].state, __ATOMIC_ACQUIRE) == kRunning;
    if (all) break;
    usleep(1000);
  }
  Say("{\"type\":\"ready\",\"pid\":" + std::to_string(getpid()) + ",\"uid\":" + std::to_string(getuid()) +
      ",\"keepsCapBpf\":" + (keep_bpf ? "true" : "false") + ",\"recovered\":" + std::to_string(recovered) + "}");
  ControlLoop(p.get());
  // Channel closed: the agent stops the pool. Let the threads finish their batch.
  p->stop.store(true);
  uint64_t one = 1;
  if (write(p->wake_fd, &one, sizeof one) < 0) _exit(4);
  for (int i = 0; i < 200; i++) {
    bool all = true;
    for (uint32_t k = 0; k < c.workers; k++)
      all = all && __atomic_load_n(&threads[k].state, __ATOMIC_ACQUIRE) == kStopped;
    if (all) break;
    usleep(1000);
  }
  _exit(0);
}
