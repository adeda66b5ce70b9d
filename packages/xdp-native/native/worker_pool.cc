// The agent's half of an out-of-process worker pool: the UMEM (a memfd both processes
// map), the AF_XDP sockets, the XSKMAP entries and the shared counter region live here,
// for the pool's life; the worker process (worker_main.cc, started by the TS side with
// the fds from workerPoolChildFds) only runs the frame loop and the NF code. The sockets
// leave here unbound, their rings sized: the first worker maps the rings, then binds
// (libxdp's order; some kernels, 6.1 among them, refuse to map a bound socket's rings).
// Where the kernel maps a bound socket's rings, a restarted worker takes the same sockets
// over: it maps their rings and goes on, XDP redirecting into them meanwhile. Where it does
// not (found by a probe after the first bind, see Publish), the supervisor replaces what the
// dead worker held before starting the next one (workerPoolRebuild): a new UMEM and new
// sockets for every queue of the pool, bound by the new worker and put into the XSKMAP
// slots of the old ones; the XDP programs and other pools' slots are not touched.
#include <fcntl.h>
#include <linux/ethtool.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <functional>
#include <memory>
#include <set>

#include "common.h"
#include "exports.h"
#include "worker_shm.h"
#include "xsk_common.h"

extern "C" {
#include <bpf/bpf.h>
#include <linux/if_xdp.h>
#include <xdp/xsk.h>
}

namespace galette {
namespace {

using namespace shm;

struct WPool {
  std::string ifname, netns;
  // the second port of a two-port installation: a second socket group (own fill and
  // completion rings, same UMEM), so a worker transmits a frame out of the other port
  std::string peer;
  uint32_t ports = 1;
  // RX queues served per port (0: all the driver reports) and the socket groups, one per
  // (port, queue), port-major
  uint32_t queues_opt = 0;
  uint32_t queues[kMaxPorts] = {1, 0};
  uint32_t groups = 1;
  // host delivery: one TAP device per port the worker writes passed frames to
  bool host_tap = false;
  int tap_fds[kMaxPorts] = {-1, -1};
  uint32_t workers = 1, frame_size = XSK_UMEM__DEFAULT_FRAME_SIZE, frame_count = 4096;
  uint32_t ring_size = 2048;
  int xsk_map_fd = -1, xsk_count_fd = -1;
  uint32_t count_entries = 0;  // of galette_xsk_count
  uint32_t xsk_slots = 0;      // of the XSKMAP
  int umem_fd = -1, shm_fd = -1;
  void* area = nullptr;
  size_t area_size = 0;
  void* shm = nullptr;
  size_t shm_size = 0;
  // One UMEM registration per group over the same memory: a frame received on one port is
  // transmitted on the other by its address, no copy. (libxdp binds every shared socket to
  // the UMEM's first socket, which the kernel refuses for a socket on another device or
  // queue; a registration per (device, queue) avoids that.)
  xsk_umem* umem[kMaxGroups] = {};
  xsk_ring_prod fq[kMaxGroups]{};
  xsk_ring_cons cq[kMaxGroups]{};
  // group-major: socket of thread t in group g = g * workers + t; a group's first socket is
  // its UMEM's own fd (closed by xsk_umem__delete), the others are ours
  std::vector<int> xsks;
  // Our read-only view of every socket's RX and TX ring (xsks order), mapped before bind:
  // what a dead worker left in them is counted when its sockets are replaced.
  struct RingView {
    void* rx = nullptr;
    void* tx = nullptr;
    size_t rx_len = 0, tx_len = 0;
    xdp_mmap_offsets off{};
  };
  std::vector<RingView> views;
  // Socket takeover after a worker death: whether this kernel maps a bound socket's rings
  // (-1: not probed yet), and whether the caller asked for replacement anyway.
  int remap_bound = -1;
  bool force_rebuild = false;
  // the XSKMAP slots still point at replaced (closed) sockets until the next Publish
  bool slots_stale = false;
  uint64_t rebuilds = 0;
  // frames the replaced sockets held for the dead worker (RX ring, unsent TX descriptors)
  // or the kernel dropped on them after the death (ring full, fill ring empty)
  uint64_t rebuild_lost = 0;
  // the kernel's counters of replaced sockets (per worker thread) and of the current ones
  // when the worker died
  std::vector<xdp_statistics> retired_stats;
  std::vector<xdp_statistics> at_death;
  uint32_t ifindex[kMaxPorts] = {};
  int ctl = -1;        // our end of the current worker's control channel
  int ctl_child = -1;  // its end, until the worker is spawned
  pid_t pid = -1;
  int pidfd = -1;
  bool published = false;
  bool open = false;
};

std::set<WPool*>& LivePools() {
  static std::set<WPool*> pools;
  return pools;
}

void KillWorker(WPool* p) {
  if (p->pid > 0) {
    kill(p->pid, SIGKILL);
    // Wait (bounded) until the process is gone, so its fds (our sockets' extra references)
    // are released when we return; the TS side reaps it.
    if (p->pidfd >= 0) {
      pollfd pfd{p->pidfd, POLLIN, 0};
      poll(&pfd, 1, 2000);
    }
  }
  if (p->pidfd >= 0) close(p->pidfd);
  p->pidfd = -1;
  p->pid = -1;
}

// Closes the sockets and their UMEM registrations and unmaps the UMEM; the shared counters
// and the TAP devices stay. The sockets' kernel counters go into retired_stats first, so a
// thread's counters carry on over a replacement. Safe on a half-built set.
void DestroySockets(WPool* p, const std::function<void(const std::string&)>& note) {
  for (uint32_t i = 0; i < p->xsks.size(); i++) {
    xdp_statistics st;
    if (SocketStats(p->xsks[i], &st)) AddStats(&p->retired_stats[i % p->workers], st);
  }
  for (WPool::RingView& v : p->views) {
    if (v.rx) munmap(v.rx, v.rx_len);
    if (v.tx) munmap(v.tx, v.tx_len);
  }
  p->views.clear();
  for (uint32_t i = 0; i < p->xsks.size(); i++)
    if (i % p->workers != 0 && p->xsks[i] >= 0) close(p->xsks[i]);
  p->xsks.clear();
  for (xsk_umem*& u : p->umem) {
    if (!u) continue;
    int err = xsk_umem__delete(u);
    if (err) {
      errno = -err;
      note("delete UMEM");
    }
    u = nullptr;
  }
  if (p->area) munmap(p->area, p->area_size);
  p->area = nullptr;
  if (p->umem_fd >= 0) close(p->umem_fd);
  p->umem_fd = -1;
}

std::string Teardown(WPool* p) {
  std::string first;
  auto note = [&](const std::string& what) {
    if (first.empty()) first = what + ": " + strerror(errno) + " (" + ErrnoName(errno) + ")";
  };
  if (p->published) {
    p->published = false;
    uint32_t zero = 0, key = 0;
    if (bpf_map_update_elem(p->xsk_count_fd, &key, &zero, 0) != 0) note("reset socket count map");
    for (key = 1; key < p->count_entries && key < 4; key++)
      if (bpf_map_update_elem(p->xsk_count_fd, &key, &zero, 0) != 0)
        note("reset galette_xsk_count[" + std::to_string(key) + "]");
    for (uint32_t i = 0; i < p->workers * p->groups; i++)
      if (bpf_map_delete_elem(p->xsk_map_fd, &i) != 0 && errno != ENOENT)
        note("clear XSKMAP slot " + std::to_string(i));
  }
  if (p->ctl >= 0) close(p->ctl);
  p->ctl = -1;
  if (p->ctl_child >= 0) close(p->ctl_child);
  p->ctl_child = -1;
  KillWorker(p);
  // A TAP device that is not persistent goes away with its last fd (the worker's died above).
  for (int& fd : p->tap_fds) {
    if (fd >= 0) close(fd);
    fd = -1;
  }
  DestroySockets(p, note);
  if (p->shm_fd >= 0) close(p->shm_fd);
  p->shm_fd = -1;
  // The shared counters stay mapped: stats stay readable after stop.
  p->open = false;
  LivePools().erase(p);
  return first;
}

void Finalize(Napi::Env, WPool* p) {
  if (p->open) Teardown(p);
  if (p->shm) munmap(p->shm, p->shm_size);
  delete p;
}

WPool* Get(const Napi::CallbackInfo& info) {
  if (!info[0].IsExternal()) ThrowType(info.Env(), "expected a worker pool handle");
  return info[0].As<Napi::External<WPool>>().Data();
}

// A TAP device beside `port`, with its MAC, up: frames written to it enter the host stack as
// if they had arrived on a device with the port's address (the stack answers on the port,
// by its routes). rp_filter off on it: the route back to a sender leads out of the port.
int OpenTap(Napi::Env env, const std::string& port) {
  unsigned idx = if_nametoindex(port.c_str());
  if (idx == 0) ThrowErrno(env, errno, "ifindex of " + port, {{"ifname", port}});
  std::string name = "galh" + std::to_string(idx);
  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) ThrowErrno(env, errno, "open /dev/net/tun for the host TAP of " + port, {{"ifname", port}});
  ifreq ifr{};
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name.c_str());
  auto fail = [&](const std::string& what) {
    int err = errno;
    close(fd);
    ThrowErrno(env, err, what + " (host TAP " + name + " of " + port + ")", {{"ifname", port}});
  };
  if (ioctl(fd, TUNSETIFF, &ifr) != 0) fail("create TAP device");
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) fail("socket for interface ioctls");
  ifreq q{};
  snprintf(q.ifr_name, IFNAMSIZ, "%s", port.c_str());
  bool ok = ioctl(s, SIOCGIFHWADDR, &q) == 0;
  if (ok) {
    snprintf(q.ifr_name, IFNAMSIZ, "%s", name.c_str());
    ok = ioctl(s, SIOCSIFHWADDR, &q) == 0;
  }
  ifreq up{};
  snprintf(up.ifr_name, IFNAMSIZ, "%s", name.c_str());
  ok = ok && ioctl(s, SIOCGIFFLAGS, &up) == 0;
  up.ifr_flags |= IFF_UP;
  ok = ok && ioctl(s, SIOCSIFFLAGS, &up) == 0;
  int err = errno;
  close(s);
  errno = err;
  if (!ok) fail("give the TAP device the port's MAC and bring it up");
  std::string rp = "/proc/sys/net/ipv4/conf/" + name + "/rp_filter";
  int r = open(rp.c_str(), O_WRONLY | O_CLOEXEC);
  if (r < 0 || write(r, "0", 1) != 1) {
    if (r >= 0) close(r);
    fail("turn rp_filter off (" + rp + ")");
  }
  close(r);
  return fd;
}

// RX queues of an interface as its driver reports them (ETHTOOL_GCHANNELS: dedicated RX
// plus combined channels); 1 when the driver does not say.
uint32_t RxQueues(Napi::Env env, const std::string& ifname) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) ThrowErrno(env, errno, "socket for the ethtool query of " + ifname, {{"ifname", ifname}});
  ethtool_channels ch{};
  ch.cmd = ETHTOOL_GCHANNELS;
  ifreq ifr{};
  snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname.c_str());
  ifr.ifr_data = reinterpret_cast<char*>(&ch);
  int r = ioctl(s, SIOCETHTOOL, &ifr);
  int err = errno;
  close(s);
  if (r != 0) {
    if (err == EOPNOTSUPP || err == EINVAL) return 1;
    ThrowErrno(env, err, "read the RX queue count of " + ifname + " (ETHTOOL_GCHANNELS)", {{"ifname", ifname}});
  }
  uint32_t n = ch.rx_count + ch.combined_count;
  return n ? n : 1;
}

// The UMEM (a fresh memfd), one registration per group, the sockets with their rings sized
// but neither mapped nor bound (the worker does both), each group's fill ring filled.
void CreateSockets(Napi::Env env, WPool* p) {
  std::string where = p->ifname + (p->ports > 1 ? "," + p->peer : "");
  p->area_size = static_cast<size_t>(p->frame_count) * p->frame_size;
  // The UMEM is a memfd so the worker process maps the very same pages.
  p->umem_fd = static_cast<int>(syscall(SYS_memfd_create, "galette-umem", MFD_CLOEXEC));
  if (p->umem_fd < 0) ThrowErrno(env, errno, "create the UMEM memfd");
  if (ftruncate(p->umem_fd, static_cast<off_t>(p->area_size)) != 0) ThrowErrno(env, errno, "size the UMEM memfd");
  p->area = mmap(nullptr, p->area_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, p->umem_fd, 0);
  if (p->area == MAP_FAILED) {
    p->area = nullptr;
    ThrowErrno(env, errno, "map " + std::to_string(p->area_size) + " bytes of UMEM");
  }
  const xsk_umem_config ucfg = UmemConfig(p->frame_count, p->frame_size);
  for (uint32_t g = 0; g < kMaxGroups; g++) {
    p->fq[g] = xsk_ring_prod{};
    p->cq[g] = xsk_ring_cons{};
  }
  int err = 0;
  for (uint32_t g = 0; g < p->groups; g++) {
    err = xsk_umem__create(&p->umem[g], p->area, p->area_size, &p->fq[g], &p->cq[g], &ucfg);
    if (err) {
      p->umem[g] = nullptr;
      ThrowErrno(env, err, "create UMEM for " + where, {{"ifname", p->ifname}});
    }
  }
  // The sockets, rings sized; the worker maps them, then binds.
  for (uint32_t g = 0; g < p->groups; g++) {
    const uint32_t port = g < p->queues[0] ? 0 : 1;
    const uint32_t queue = port ? g - p->queues[0] : g;
    const std::string& ifname = port == 0 ? p->ifname : p->peer;
    std::string at = ifname + " queue " + std::to_string(queue);
    for (uint32_t t = 0; t < p->workers; t++) {
      int fd = t == 0 ? xsk_umem__fd(p->umem[g]) : socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0);
      if (fd < 0)
        ThrowErrno(env, errno, "create AF_XDP socket " + std::to_string(t) + " on " + at, {{"ifname", ifname}});
      p->xsks.push_back(fd);
      for (int opt : {XDP_RX_RING, XDP_TX_RING})
        if (setsockopt(fd, SOL_XDP, opt, &p->ring_size, sizeof p->ring_size) != 0)
          ThrowErrno(env, errno, "size the rings of AF_XDP socket " + std::to_string(t) + " on " + at,
                     {{"ifname", ifname}});
      // our view of its RX and TX rings, while it is unbound (see WPool::views)
      WPool::RingView& v = p->views.emplace_back();
      socklen_t len = sizeof v.off;
      if (getsockopt(fd, SOL_XDP, XDP_MMAP_OFFSETS, &v.off, &len) != 0)
        ThrowErrno(env, errno, "read the ring offsets of AF_XDP socket " + std::to_string(t) + " on " + at);
      v.rx_len = v.off.rx.desc + p->ring_size * sizeof(xdp_desc);
      v.tx_len = v.off.tx.desc + p->ring_size * sizeof(xdp_desc);
      const std::pair<size_t, off_t> rings[2] = {{v.rx_len, static_cast<off_t>(XDP_PGOFF_RX_RING)},
                                                 {v.tx_len, static_cast<off_t>(XDP_PGOFF_TX_RING)}};
      for (int r = 0; r < 2; r++) {
        void* m = mmap(nullptr, rings[r].first, PROT_READ, MAP_SHARED, fd, rings[r].second);
        if (m == MAP_FAILED)
          ThrowErrno(env, errno, "map the rings of AF_XDP socket " + std::to_string(t) + " on " + at);
        (r == 0 ? v.rx : v.tx) = m;
      }
    }
  }
  // Each group's fill ring gets that group's share of the frames (see worker_shm.h).
  const uint32_t share = p->frame_count / p->groups;
  for (uint32_t g = 0; g < p->groups; g++)
    if (!FillFrames(&p->fq[g], g * share, share, p->frame_size))
      ThrowErrno(env, ENOSPC, "fill ring of " + where + " cannot take " + std::to_string(share) + " frames");
}

void SetUp(Napi::Env env, WPool* p) {
  NetnsScope ns(env, p->netns);
  // The layout: every RX queue of each port (or the first queues_opt), checked against the
  // XSKMAP and the socket count map before anything is created.
  p->groups = 0;
  for (uint32_t port = 0; port < p->ports; port++) {
    const std::string& ifname = port == 0 ? p->ifname : p->peer;
    uint32_t q = p->queues_opt ? p->queues_opt : RxQueues(env, ifname);
    if (q > kMaxQueues)
      ThrowErrno(env, E2BIG,
                 ifname + " has " + std::to_string(q) + " RX queues; a worker pool serves at most " +
                     std::to_string(kMaxQueues) + " per port (set queues)",
                 {{"ifname", ifname}});
    p->queues[port] = q;
    p->groups += q;
  }
  std::string where = p->ifname + (p->ports > 1 ? "," + p->peer : "");
  // Each port has at least one queue (RxQueues, queues >= 1): every division by groups
  // (here, in CreateSockets and CountLeftovers) relies on it.
  if (p->groups == 0) ThrowErrno(env, EINVAL, "no RX queue to serve on " + where);
  if (p->workers * p->groups > p->xsk_slots)
    ThrowErrno(env, EINVAL,
               "XSKMAP has " + std::to_string(p->xsk_slots) + " slots for " + std::to_string(p->workers) +
                   " workers x " + std::to_string(p->groups) + " RX queues on " + where);
  if (p->count_entries < (p->groups > p->ports ? 4u : p->ports))
    ThrowErrno(env, EINVAL,
               "galette_xsk_count has " + std::to_string(p->count_entries) + " entries; " + where + " needs " +
                   (p->groups > p->ports ? "4 (sockets per queue, second port, queues per port)"
                                         : "2 (sockets per queue, second port)"));
  if (p->frame_count / p->groups < 64)
    ThrowErrno(env, EINVAL,
               std::to_string(p->frame_count) + " UMEM frames are too few for " + std::to_string(p->groups) +
                   " RX queues on " + where + " (at least 64 each; raise frameCount)");
  if (p->host_tap)
    for (uint32_t port = 0; port < p->ports; port++) p->tap_fds[port] = OpenTap(env, port == 0 ? p->ifname : p->peer);
  for (uint32_t port = 0; port < p->ports; port++) {
    const std::string& ifname = port == 0 ? p->ifname : p->peer;
    p->ifindex[port] = if_nametoindex(ifname.c_str());
    if (!p->ifindex[port]) ThrowErrno(env, errno, "ifindex of " + ifname, {{"ifname", ifname}});
  }
  CreateSockets(env, p);
  p->shm_size = RegionSize(p->workers);
  p->shm_fd = static_cast<int>(syscall(SYS_memfd_create, "galette-worker-shm", MFD_CLOEXEC));
  if (p->shm_fd < 0) ThrowErrno(env, errno, "create the worker counter memfd");
  if (ftruncate(p->shm_fd, static_cast<off_t>(p->shm_size)) != 0)
    ThrowErrno(env, errno, "size the worker counter memfd");
  p->shm = mmap(nullptr, p->shm_size, PROT_READ | PROT_WRITE, MAP_SHARED, p->shm_fd, 0);
  if (p->shm == MAP_FAILED) {
    p->shm = nullptr;
    ThrowErrno(env, errno, "map the worker counters");
  }
  Header* h = static_cast<Header*>(p->shm);
  h->magic = kMagic;
  h->version = kVersion;
  h->workers = p->workers;
  h->frame_count = p->frame_count;
  h->frame_size = p->frame_size;
  h->groups = p->groups;
  h->ports = p->ports;
  for (uint32_t port = 0; port < kMaxPorts; port++) h->queues[port] = p->queues[port];
  for (uint32_t port = 0; port < kMaxPorts; port++) h->ifindex[port] = p->ifindex[port];
  h->bind_flags = XDP_COPY | XDP_USE_NEED_WAKEUP;
  h->bound_sockets = 0;
  ThreadShm* t = Threads(p->shm);
  for (uint32_t i = 0; i < p->workers; i++) t[i].current_instance = kNoInstance;
}

// workerPoolOpen(config) -> handle: the UMEM, sockets and shared counters; no worker yet.
Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) ThrowType(env, "worker pool config must be an object");
  Napi::Object cfg = info[0].As<Napi::Object>();
  auto p = std::make_unique<WPool>();
  if (!cfg.Get("ifname").IsString()) ThrowType(env, "worker pool option ifname must be a string");
  p->ifname = cfg.Get("ifname").As<Napi::String>().Utf8Value();
  if (cfg.Get("netns").IsString()) p->netns = cfg.Get("netns").As<Napi::String>().Utf8Value();
  p->queues_opt = PoolOptionU32(env, cfg, "queues", 0, 1, kMaxQueues);
  if (cfg.Get("peer").IsString()) {
    p->peer = cfg.Get("peer").As<Napi::String>().Utf8Value();
    if (p->peer == p->ifname) ThrowType(env, "worker pool option peer must differ from ifname");
    p->ports = 2;
  }
  p->host_tap = cfg.Get("hostTap").IsBoolean() && cfg.Get("hostTap").As<Napi::Boolean>().Value();
  p->workers = PoolOptionU32(env, cfg, "workers", 1, 1, GALETTE_MAX_XSKS / p->ports);
  p->frame_size = PoolOptionU32(env, cfg, "frameSize", XSK_UMEM__DEFAULT_FRAME_SIZE, 2048, 4096);
  p->frame_count = PoolOptionU32(env, cfg, "frameCount", 4096, 64, 1u << 20);
  p->ring_size = PoolOptionU32(env, cfg, "ringSize", 2048, 64, 1u << 16);
  PoolOptionU32(env, cfg, "batchSize", 64, 1, kMaxBatch);
  PoolOptionU32(env, cfg, "pollTimeoutMs", 1000, 1, 60000);
  RequirePow2(env, {{"frameSize", p->frame_size}, {"frameCount", p->frame_count}, {"ringSize", p->ring_size}});
  p->xsk_map_fd = static_cast<int>(PoolOptionU32(env, cfg, "xskMapFd", UINT32_MAX, 0, INT32_MAX));
  p->xsk_count_fd = static_cast<int>(PoolOptionU32(env, cfg, "xskCountMapFd", UINT32_MAX, 0, INT32_MAX));
  const XskMaps maps = CheckXskMaps(env, p->xsk_map_fd, p->xsk_count_fd);
  p->xsk_slots = maps.slots;
  p->count_entries = maps.count_entries;
  p->force_rebuild = cfg.Get("rebuildSockets").IsBoolean() && cfg.Get("rebuildSockets").As<Napi::Boolean>().Value();
  p->retired_stats.assign(p->workers, xdp_statistics{});
  p->open = true;
  LivePools().insert(p.get());
  try {
    SetUp(env, p.get());
  } catch (...) {
    Teardown(p.get());
    throw;
  }
  return Napi::External<WPool>::New(env, p.release(), Finalize);
}

// workerPoolChildFds(handle) -> [control, umem, counters, socket0, ...]: the fds a new
// worker gets as 3, 4, 5, 6... A fresh control channel each time: nothing meant for a
// dead worker reaches the next one.
Napi::Value ChildFds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  WPool* p = Get(info);
  if (!p->open) ThrowType(env, "worker pool on " + p->ifname + " is stopped");
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    ThrowErrno(env, errno, "create the worker control channel");
  if (p->ctl >= 0) close(p->ctl);
  if (p->ctl_child >= 0) close(p->ctl_child);
  p->ctl = sv[0];
  p->ctl_child = sv[1];
  // Large updates (256 instances) must not block on a small socket buffer.
  int sz = 1 << 20;
  setsockopt(p->ctl, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
  Napi::Array out = Napi::Array::New(env);
  uint32_t k = 0;
  out.Set(k++, p->ctl_child);
  out.Set(k++, p->umem_fd);
  out.Set(k++, p->shm_fd);
  for (int fd : p->xsks) out.Set(k++, fd);
  for (uint32_t port = 0; port < p->ports; port++)
    if (p->tap_fds[port] >= 0) out.Set(k++, p->tap_fds[port]);
  return out;
}

// workerPoolSpawned(handle, pid): the worker runs; we drop its channel end and watch it.
Napi::Value Spawned(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  WPool* p = Get(info);
  pid_t pid = static_cast<pid_t>(ArgU32(info, 1, "pid"));
  if (p->ctl_child >= 0) close(p->ctl_child);
  p->ctl_child = -1;
  if (p->pidfd >= 0) close(p->pidfd);
  p->pid = pid;
  p->pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (p->pidfd < 0 && errno != ESRCH) ThrowErrno(env, errno, "watch worker process " + std::to_string(pid));
  return env.Undefined();
}

// workerPoolExited(handle): the TS side saw the worker exit. The sockets' kernel counters
// now are where the frames lost until they are replaced (if they are) are counted from.
Napi::Value Exited(const Napi::CallbackInfo& info) {
  WPool* p = Get(info);
  p->at_death.assign(p->xsks.size(), xdp_statistics{});
  for (uint32_t i = 0; i < p->xsks.size(); i++) SocketStats(p->xsks[i], &p->at_death[i]);
  if (p->pidfd >= 0) close(p->pidfd);
  p->pidfd = -1;
  p->pid = -1;
  return info.Env().Undefined();
}

Napi::Value KillCall(const Napi::CallbackInfo& info) {
  KillWorker(Get(info));
  return info.Env().Undefined();
}

void SendAll(Napi::Env env, WPool* p, const void* data, size_t len, const int* fds, size_t nfds) {
  if (nfds > GALETTE_MAX_MAPS) {
    throw Napi::Error::New(env, "an NF instance passes " + std::to_string(nfds) + " map fds to the worker on " +
                                    p->ifname + " (at most " + std::to_string(GALETTE_MAX_MAPS) + ")");
  }
  iovec iov{const_cast<void*>(data), len};
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * GALETTE_MAX_MAPS)];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (nfds) {
    msg.msg_control = cbuf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  for (int tries = 0;; tries++) {
    const ssize_t sent = sendmsg(p->ctl, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (sent == static_cast<ssize_t>(len)) return;
    if (sent >= 0) {
      // SOCK_SEQPACKET sends a record whole or not at all: a short count (errno not set)
      // means the control line is not what it should be.
      throw Napi::Error::New(env, "sent " + std::to_string(sent) + " of " + std::to_string(len) +
                                      " bytes of the instance table to the NF worker on " + p->ifname);
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN && tries < 100) {
      // The worker reads as fast as it loads libraries; bounded so a hung worker cannot
      // hang the agent.
      pollfd pfd{p->ctl, POLLOUT, 0};
      poll(&pfd, 1, 10);
      continue;
    }
    ThrowErrno(env, errno, "send the instance table to the NF worker on " + p->ifname);
  }
}

// workerPoolSend(handle, instances, generation): reads every action table here (the worker
// has no business with them) and sends the set as one update; the worker answers on its
// status line with "published" or "rejected" for this generation.
Napi::Value Send(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  WPool* p = Get(info);
  if (!p->open) ThrowType(env, "worker pool on " + p->ifname + " is stopped");
  if (p->ctl < 0) ThrowType(env, "worker pool on " + p->ifname + " has no worker");
  if (!info[1].IsArray()) ThrowType(env, "instances must be an array");
  double gen = info[2].IsNumber() ? info[2].As<Napi::Number>().DoubleValue() : 0;
  Napi::Array arr = info[1].As<Napi::Array>();
  struct Built {
    MsgInstance m;
    std::string library;
    std::vector<int> fds;
  };
  std::vector<Built> all;
  std::set<uint32_t> seen;
  // Everything is checked before the first byte goes out.
  for (uint32_t i = 0; i < arr.Length(); i++) {
    std::string at = "instances[" + std::to_string(i) + "]";
    if (!arr.Get(i).IsObject()) ThrowType(env, at + " must be an object");
    Napi::Object e = arr.Get(i).As<Napi::Object>();
    Built b{};
    b.m.type = kMsgInstance;
    b.m.id = PoolOptionU32(env, e, "id", UINT32_MAX, 0, GALETTE_MAX_INSTANCES - 1);
    if (b.m.id == UINT32_MAX) ThrowType(env, at + ".id is required");
    if (!seen.insert(b.m.id).second) ThrowType(env, "instance id " + std::to_string(b.m.id) + " is listed twice");
    int afd = static_cast<int>(PoolOptionU32(env, e, "actionsMapFd", UINT32_MAX, 0, INT32_MAX));
    if (afd < 0) ThrowType(env, at + ".actionsMapFd is required");
    std::string table = "action table of instance " + std::to_string(b.m.id);
    bpf_map_info a = MapInfo(env, afd, table);
    if (a.type != BPF_MAP_TYPE_ARRAY || a.key_size != 4 || a.value_size != sizeof(galette_action))
      ThrowErrno(env, EINVAL,
                 table + " must be an ARRAY u32 -> struct galette_action (8 bytes), got type " +
                     std::to_string(a.type) + " key " + std::to_string(a.key_size) + " value " +
                     std::to_string(a.value_size));
    for (uint32_t v = 0; v < GALETTE_MAX_ACTIONS; v++) {
      if (bpf_map_lookup_elem(afd, &v, &b.m.actions[v]) != 0) {
        // A table with fewer entries: missing variants abort, as in XDP.
        if (errno == ENOENT) continue;
        ThrowErrno(
            env, errno,
            "read action table of NF instance " + std::to_string(b.m.id) + " (variant " + std::to_string(v) + ")");
      }
    }
    if (e.Get("library").IsString()) b.library = e.Get("library").As<Napi::String>().Utf8Value();
    if (b.library.size() > kMaxLibraryPath) ThrowType(env, at + ".library is too long");
    Napi::Value fds = e.Get("mapFds");
    if (fds.IsArray()) {
      Napi::Array fa = fds.As<Napi::Array>();
      if (fa.Length() > GALETTE_MAX_MAPS)
        ThrowType(env, "instance " + std::to_string(b.m.id) + " has " + std::to_string(fa.Length()) +
                           " map fds, at most " + std::to_string(GALETTE_MAX_MAPS));
      for (uint32_t j = 0; j < fa.Length(); j++) {
        if (!fa.Get(j).IsNumber()) ThrowType(env, "instance " + std::to_string(b.m.id) + " mapFds must be numbers");
        int fd = fa.Get(j).As<Napi::Number>().Int32Value();
        bpf_map_info mi = MapInfo(env, fd, "map " + std::to_string(j) + " of instance " + std::to_string(b.m.id));
        b.m.maps[j] = MsgMap{mi.type, mi.map_flags, mi.value_size, mi.max_entries};
        b.fds.push_back(fd);
      }
    }
    b.m.map_count = static_cast<uint32_t>(b.fds.size());
    b.m.library_len = static_cast<uint32_t>(b.library.size());
    all.push_back(std::move(b));
  }
  std::vector<uint8_t> buf;
  for (const Built& b : all) {
    buf.resize(sizeof b.m + b.library.size());
    memcpy(buf.data(), &b.m, sizeof b.m);
    memcpy(buf.data() + sizeof b.m, b.library.data(), b.library.size());
    SendAll(env, p, buf.data(), buf.size(), b.fds.data(), b.fds.size());
  }
  MsgCommit c{kMsgCommit, static_cast<uint32_t>(all.size()), static_cast<uint64_t>(gen)};
  SendAll(env, p, &c, sizeof c, nullptr, 0);
  return env.Undefined();
}

// What a dead worker left in the sockets about to be replaced, counted. Frames waiting in
// an RX ring and TX descriptors the kernel never took go with the sockets (rebuild_lost),
// as do frames the kernel dropped on them since the death (ring full, fill ring empty).
// Frames the worker had taken and not yet passed on died in its hands (crash_recovered, as
// RecoverFrames in worker_main.cc counts them when a worker takes sockets over). The ring
// indices come from the worker's side of shared memory: each count is clamped to its ring.
void CountLeftovers(WPool* p) {
  const uint32_t share = p->frame_count / p->groups;  // groups >= 1: SetUp checked frames/group >= 64
  const uint32_t used = share * p->groups;            // frames given to the fill rings
  std::vector<uint8_t> seen(used, 0);
  auto mark = [&](uint64_t addr) {
    const uint64_t f = addr / p->frame_size;
    if (f < used) seen[f] = 1;
  };
  auto visit = [&](const void* base, const xdp_ring_offset& off, uint32_t size, bool desc) -> uint32_t {
    const uint8_t* b = static_cast<const uint8_t*>(base);
    const uint32_t prod = __atomic_load_n(reinterpret_cast<const uint32_t*>(b + off.producer), __ATOMIC_ACQUIRE);
    const uint32_t cons = __atomic_load_n(reinterpret_cast<const uint32_t*>(b + off.consumer), __ATOMIC_ACQUIRE);
    const uint32_t n = prod - cons <= size ? prod - cons : size;
    for (uint32_t i = 0; i < n; i++) {
      const uint32_t k = (cons + i) & (size - 1);
      mark(desc ? reinterpret_cast<const xdp_desc*>(b + off.desc)[k].addr
                : reinterpret_cast<const uint64_t*>(b + off.desc)[k]);
    }
    return n;
  };
  uint64_t lost = 0;
  for (uint32_t i = 0; i < p->views.size(); i++) {
    const WPool::RingView& v = p->views[i];
    lost += visit(v.rx, v.off.rx, p->ring_size, true);
    lost += visit(v.tx, v.off.tx, p->ring_size, true);
  }
  for (uint32_t g = 0; g < p->groups; g++) {
    // libxdp's ring structs point into our own mappings of the fill and completion rings
    for (const auto& [prod, cons, ring, size] :
         {std::tuple{p->fq[g].producer, p->fq[g].consumer, p->fq[g].ring, p->fq[g].size},
          std::tuple{p->cq[g].producer, p->cq[g].consumer, p->cq[g].ring, p->cq[g].size}}) {
      const uint32_t pr = __atomic_load_n(prod, __ATOMIC_ACQUIRE), co = __atomic_load_n(cons, __ATOMIC_ACQUIRE);
      const uint32_t n = pr - co <= size ? pr - co : size;
      for (uint32_t i = 0; i < n; i++) mark(static_cast<const uint64_t*>(ring)[(co + i) & (size - 1)]);
    }
  }
  for (uint32_t i = 0; i < p->xsks.size() && i < p->at_death.size(); i++) {
    xdp_statistics now;
    if (!SocketStats(p->xsks[i], &now)) continue;
    lost += (now.rx_dropped - p->at_death[i].rx_dropped) + (now.rx_ring_full - p->at_death[i].rx_ring_full);
  }
  p->rebuild_lost += lost;
  // Frames a thread had taken off its RX ring (the batch's consumer move happened) and
  // neither transmitted (its TX producer move) nor put back: they died with the worker.
  // The journal is the worker's word: indices bounded, each frame counted once.
  auto index_at = [](const void* base, uint64_t off) {
    return __atomic_load_n(reinterpret_cast<const uint32_t*>(static_cast<const uint8_t*>(base) + off),
                           __ATOMIC_ACQUIRE);
  };
  ThreadShm* threads = Threads(p->shm);
  uint64_t held = 0;
  for (uint32_t t = 0; t < p->workers; t++) {
    const Journal& j = threads[t].journal;
    const uint32_t in = j.rx_group * p->workers + t;
    if (!__atomic_load_n(&j.rx_valid, __ATOMIC_ACQUIRE) || j.rx_group >= p->groups || in >= p->views.size() ||
        index_at(p->views[in].rx, p->views[in].off.rx.consumer) == j.rx_start)
      continue;
    std::vector<uint8_t> sent(used, 0);
    for (uint32_t g = 0; g < p->groups; g++) {
      const uint32_t out = g * p->workers + t;
      if (!j.tx_valid[g] || out >= p->views.size() ||
          index_at(p->views[out].tx, p->views[out].off.tx.producer) == j.tx_start[g])
        continue;
      for (uint32_t i = 0; i < j.tx_n[g] && i < kMaxBatch; i++) {
        const uint64_t f = j.tx_addr[g][i] / p->frame_size;
        if (f < used) sent[f] = 1;
      }
    }
    for (uint32_t i = 0; i < j.rx_n && i < kMaxBatch; i++) {
      const uint64_t f = j.rx_addr[i] / p->frame_size;
      if (f < used && !seen[f] && !sent[f]) {
        seen[f] = 1;
        held++;
      }
    }
  }
  if (held) Add(&static_cast<Header*>(p->shm)->crash_recovered, held);
}

// workerPoolRebuild(handle): replaces what the dead worker held (see the top of this file):
// counts what it left, closes its sockets and UMEM (the kernel takes them out of the
// XSKMAP), and creates new ones for the next worker to map and bind. The next Publish
// puts them into the same XSKMAP slots. Frames XDP upcalls in between find no socket.
Napi::Value Rebuild(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  WPool* p = Get(info);
  if (!p->open) ThrowType(env, "worker pool on " + p->ifname + " is stopped");
  if (p->pid > 0) ThrowType(env, "worker pool on " + p->ifname + " still has a worker: its sockets stay");
  std::string first;
  auto note = [&](const std::string& what) {
    if (first.empty()) first = what + ": " + strerror(errno) + " (" + ErrnoName(errno) + ")";
  };
  if (!p->xsks.empty()) {
    CountLeftovers(p);
    DestroySockets(p, note);
    p->slots_stale = true;
  }
  p->at_death.clear();
  if (!first.empty()) ThrowErrno(env, EIO, "replace the AF_XDP sockets on " + p->ifname + ": " + first);
  // Nothing is bound now, and the journals describe rings that are gone.
  Header* h = static_cast<Header*>(p->shm);
  __atomic_store_n(&h->bound_sockets, 0, __ATOMIC_RELEASE);
  ThreadShm* t = Threads(p->shm);
  for (uint32_t i = 0; i < p->workers; i++) memset(&t[i].journal, 0, offsetof(Journal, rx_addr));
  try {
    NetnsScope ns(env, p->netns);
    CreateSockets(env, p);
  } catch (...) {
    DestroySockets(p, note);  // a later call starts over
    throw;
  }
  p->rebuilds++;
  return env.Undefined();
}

// workerPoolPublish(handle): XDP starts choosing our sockets.
Napi::Value Publish(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  WPool* p = Get(info);
  if (p->published && !p->slots_stale) return env.Undefined();
  // the worker binds before it reports ready; an unbound socket in the XSKMAP takes nothing
  uint32_t bound = __atomic_load_n(&static_cast<Header*>(p->shm)->bound_sockets, __ATOMIC_ACQUIRE);
  if (p->xsks.empty() || bound < p->xsks.size())
    ThrowErrno(env, EINVAL,
               "the worker bound " + std::to_string(bound) + " of " + std::to_string(p->xsks.size()) +
                   " AF_XDP sockets on " + p->ifname);
  // Whether the next worker can take these sockets over: does the kernel map the rings of a
  // bound socket (6.1 does not)? Asked once, of the first socket.
  if (p->remap_bound < 0) {
    void* m = mmap(nullptr, p->views[0].rx_len, PROT_READ, MAP_SHARED, p->xsks[0], XDP_PGOFF_RX_RING);
    p->remap_bound = m != MAP_FAILED;
    if (m != MAP_FAILED) munmap(m, p->views[0].rx_len);
  }
  p->published = true;
  p->slots_stale = false;
  for (uint32_t i = 0; i < p->xsks.size(); i++) {
    int fd = p->xsks[i];
    if (bpf_map_update_elem(p->xsk_map_fd, &i, &fd, 0) != 0)
      ThrowErrno(env, errno, "put AF_XDP socket " + std::to_string(i) + " into XSKMAP slot " + std::to_string(i));
  }
  // [1] = the second port's ifindex, [2], [3] = RX queues per port (XDP upcalls a frame of
  // port P, queue q to a socket of group (P ? [2] : 0) + q, slots group * workers onwards;
  // AF_XDP only takes a frame on a socket bound to the queue it arrived on), all written
  // before [0] makes the sockets visible at all.
  for (uint32_t port = 0; port < p->ports && p->count_entries >= 4; port++) {
    uint32_t key = 2 + port;
    if (bpf_map_update_elem(p->xsk_count_fd, &key, &p->queues[port], 0) != 0)
      ThrowErrno(env, errno, "set galette_xsk_count[" + std::to_string(key) + "] (RX queues)");
  }
  if (p->ports > 1) {
    uint32_t key = 1, ifindex = 0;
    {
      NetnsScope ns(env, p->netns);
      ifindex = if_nametoindex(p->peer.c_str());
    }
    if (ifindex == 0) ThrowErrno(env, errno, "ifindex of " + p->peer);
    if (bpf_map_update_elem(p->xsk_count_fd, &key, &ifindex, 0) != 0)
      ThrowErrno(env, errno, "set galette_xsk_count[1] to the second port");
  }
  uint32_t key = 0, count = p->workers;
  if (bpf_map_update_elem(p->xsk_count_fd, &key, &count, 0) != 0)
    ThrowErrno(env, errno, "set galette_xsk_count to " + std::to_string(count));
  return env.Undefined();
}

// workerPoolQuiesced(handle, generation): no worker thread still reads an older table.
Napi::Value Quiesced(const Napi::CallbackInfo& info) {
  WPool* p = Get(info);
  double g = info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : 0;
  bool ok = true;
  if (p->open && p->pid > 0) {
    ThreadShm* t = Threads(p->shm);
    for (uint32_t i = 0; i < p->workers; i++) {
      uint64_t h = __atomic_load_n(&t[i].holding, __ATOMIC_ACQUIRE);
      if (h != 0 && h < static_cast<uint64_t>(g)) ok = false;
    }
    // ... and the worker has freed (dlclosed) every table older than that.
    Header* hd = static_cast<Header*>(p->shm);
    uint64_t oldest = __atomic_load_n(&hd->oldest_retired, __ATOMIC_ACQUIRE);
    if (oldest != 0 && oldest < static_cast<uint64_t>(g)) ok = false;
  }
  return Napi::Boolean::New(info.Env(), ok);
}

// workerPoolCrashSite(handle) -> instance ids worker threads were inside when the process
// died (the worker's own record: trust it for reporting only).
Napi::Value CrashSite(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  WPool* p = Get(info);
  Napi::Array out = Napi::Array::New(env);
  ThreadShm* t = Threads(p->shm);
  uint32_t k = 0;
  for (uint32_t i = 0; i < p->workers; i++) {
    uint32_t id = __atomic_load_n(&t[i].current_instance, __ATOMIC_ACQUIRE);
    if (id < GALETTE_MAX_INSTANCES) out.Set(k++, id);
    t[i].current_instance = kNoInstance;
  }
  return out;
}

const char* StateName(uint32_t s) {
  switch (s) {
    case kStarting: return "starting";
    case kRunning: return "running";
    case kFailed: return "failed";
    case kStopped: return "stopped";
  }
  return "unknown";
}

Napi::Value Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  WPool* p = Get(info);
  Header* h = static_cast<Header*>(p->shm);
  ThreadShm* t = Threads(p->shm);
  Napi::Object out = Napi::Object::New(env);
  out.Set("generation", static_cast<double>(__atomic_load_n(&h->published, __ATOMIC_ACQUIRE)));
  out.Set("running", p->open);
  out.Set("retiredTables", p->pid > 0 ? Load32(&h->retired_count) : 0);
  out.Set("crashRecovered", static_cast<double>(Load(&h->crash_recovered)));
  out.Set("keepsCapBpf", Load32(&h->keeps_cap_bpf) == 1);
  out.Set("takeover", p->force_rebuild || p->remap_bound == 0 ? "rebuild" : "remap");
  out.Set("socketRebuilds", static_cast<double>(p->rebuilds));
  out.Set("framesLostInRebuilds", static_cast<double>(p->rebuild_lost));
  // frames received per RX queue of each port, summed over the threads
  Napi::Array per_port = Napi::Array::New(env);
  for (uint32_t port = 0, g = 0; port < p->ports; port++) {
    Napi::Array qs = Napi::Array::New(env);
    for (uint32_t q = 0; q < p->queues[port]; q++, g++) {
      uint64_t n = 0;
      for (uint32_t i = 0; i < p->workers; i++) n += Load(&t[i].group_rx[g]);
      qs.Set(q, static_cast<double>(n));
    }
    per_port.Set(port, qs);
  }
  out.Set("rxPerQueue", per_port);
  Napi::Array workers = Napi::Array::New(env);
  for (uint32_t i = 0; i < p->workers; i++) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("index", i);
    o.Set("state", StateName(p->open ? Load32(&t[i].state) : kStopped));
    o.Set("generation", static_cast<double>(Load(&t[i].last_generation)));
#define X(name, doc) o.Set(#name, static_cast<double>(Load(&t[i].counters[k_##name])));
    GALETTE_WORKER_COUNTERS(X)
#undef X
    if (p->open && i < p->xsks.size()) {
      // the thread's sockets of every group (port), summed
      xdp_statistics ks = p->retired_stats[i];  // of the sockets this thread had before
      bool got = false;
      for (uint32_t g = 0; g < p->groups; g++) {
        xdp_statistics one;
        if (g * p->workers + i >= p->xsks.size() || !SocketStats(p->xsks[g * p->workers + i], &one)) continue;
        got = true;
        AddStats(&ks, one);
      }
      if (got) o.Set("kernel", KernelStatsObject(env, ks));
    }
    workers.Set(i, o);
  }
  out.Set("workers", workers);
  // Per instance, summed over threads; the caller filters to its current set.
  Napi::Array instances = Napi::Array::New(env);
  uint32_t k = 0;
  for (uint32_t id = 0; id < GALETTE_MAX_INSTANCES; id++) {
    InstanceTotals t;
    for (uint32_t w = 0; w < p->workers; w++) {
      InstanceCounters& s = Instances(p->shm, p->workers, w)[id];
      t.calls += Load(&s.calls);
      t.nanoseconds += Load(&s.nanoseconds);
      for (uint32_t v = 0; v < GALETTE_MAX_ACTIONS; v++) t.variants[v] += Load(&s.variants[v]);
    }
    instances.Set(k++, InstanceStatsObject(env, id, t));
  }
  out.Set("instances", instances);
  return out;
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  WPool* p = Get(info);
  if (!p->open) return env.Undefined();
  std::string err = Teardown(p);
  if (!err.empty()) ThrowErrno(env, EIO, "stop AF_XDP worker pool on " + p->ifname + ": " + err);
  return env.Undefined();
}

void CleanupAll(void*) {
  // Process exit without stop(): the worker must not outlive us holding the sockets.
  std::vector<WPool*> pools(LivePools().begin(), LivePools().end());
  for (WPool* p : pools) Teardown(p);
}

}  // namespace

void RegisterWorkerPool(Napi::Env env, Napi::Object exports) {
  exports.Set("workerPoolOpen", Napi::Function::New(env, Open));
  exports.Set("workerPoolChildFds", Napi::Function::New(env, ChildFds));
  exports.Set("workerPoolSpawned", Napi::Function::New(env, Spawned));
  exports.Set("workerPoolExited", Napi::Function::New(env, Exited));
  exports.Set("workerPoolKill", Napi::Function::New(env, KillCall));
  exports.Set("workerPoolSend", Napi::Function::New(env, Send));
  exports.Set("workerPoolRebuild", Napi::Function::New(env, Rebuild));
  exports.Set("workerPoolPublish", Napi::Function::New(env, Publish));
  exports.Set("workerPoolQuiesced", Napi::Function::New(env, Quiesced));
  exports.Set("workerPoolCrashSite", Napi::Function::New(env, CrashSite));
  exports.Set("workerPoolStats", Napi::Function::New(env, Stats));
  exports.Set("workerPoolClose", Napi::Function::New(env, Close));
  napi_add_env_cleanup_hook(env, CleanupAll, nullptr);
}

}  // namespace galette
