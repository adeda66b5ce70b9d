// The in-process AF_XDP pool's N-API surface: poolStart, poolUpdate, poolReload,
// poolQuiesced, poolStats, poolStop, and the set-up and tear-down behind them (see pool.h
// for the contract).
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <set>

#include "exports.h"
#include "pool.h"
#include "xsk_common.h"

extern "C" {
#include <bpf/bpf.h>
}

namespace galette {
namespace inproc {
namespace {

std::set<Pool*>& LivePools() {
  static std::set<Pool*> pools;
  return pools;
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
    inst.id = PoolOptionU32(env, e, "id", UINT32_MAX, 0, GALETTE_MAX_INSTANCES - 1);
    if (inst.id == UINT32_MAX) ThrowType(env, at + ".id is required");
    if (!seen.insert(inst.id).second) ThrowType(env, "instance id " + std::to_string(inst.id) + " is listed twice");
    inst.actions_fd = static_cast<int>(PoolOptionU32(env, e, "actionsMapFd", UINT32_MAX, 0, INT32_MAX));
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
  pool->queue = PoolOptionU32(env, cfg, "queue", 0, 0, 1u << 16);
  pool->worker_count = PoolOptionU32(env, cfg, "workers", 1, 1, GALETTE_MAX_XSKS);
  pool->frame_size = PoolOptionU32(env, cfg, "frameSize", XSK_UMEM__DEFAULT_FRAME_SIZE, 2048, 4096);
  pool->frame_count = PoolOptionU32(env, cfg, "frameCount", 4096, 64, 1u << 20);
  pool->ring_size = PoolOptionU32(env, cfg, "ringSize", 2048, 64, 1u << 16);
  pool->batch_size = PoolOptionU32(env, cfg, "batchSize", 64, 1, 1024);
  pool->poll_timeout_ms = PoolOptionU32(env, cfg, "pollTimeoutMs", 1000, 1, 60000);
  pool->busy_poll = cfg.Get("busyPoll").ToBoolean();
  RequirePow2(env, {{"frameSize", pool->frame_size}, {"frameCount", pool->frame_count}, {"ringSize", pool->ring_size}});
  pool->xsk_map_fd = static_cast<int>(PoolOptionU32(env, cfg, "xskMapFd", UINT32_MAX, 0, INT32_MAX));
  pool->xsk_count_fd = static_cast<int>(PoolOptionU32(env, cfg, "xskCountMapFd", UINT32_MAX, 0, INT32_MAX));
  return ParseInstances(env, cfg.Get("instances"), "worker pool option instances");
}

// Checks the maps the pool writes to or reads from have the shapes the ABI says.
void CheckMaps(Napi::Env env, Pool* pool) {
  const XskMaps maps = CheckXskMaps(env, pool->xsk_map_fd, pool->xsk_count_fd);
  if (maps.slots < pool->worker_count)
    ThrowErrno(
        env, EINVAL,
        "XSKMAP has " + std::to_string(maps.slots) + " slots for " + std::to_string(pool->worker_count) + " workers");
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
  const xsk_umem_config ucfg = UmemConfig(pool->frame_count, pool->frame_size);
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
  if (!FillFrames(&pool->fq, 0, pool->frame_count, pool->frame_size))
    ThrowErrno(env, ENOSPC,
               "fill ring of " + where + " cannot take all " + std::to_string(pool->frame_count) + " frames");
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
    xdp_statistics ks;
    if (SocketStats(w->fd, &ks)) o.Set("kernel", KernelStatsObject(env, ks));
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
    InstanceTotals t;
    for (auto& w : pool->workers) {
      InstanceStats& s = w->instances[id];
      t.calls += s.calls.Get();
      t.nanoseconds += s.nanoseconds.Get();
      for (uint32_t v = 0; v < GALETTE_MAX_ACTIONS; v++) t.variants[v] += s.variants[v].Get();
    }
    instances.Set(k++, InstanceStatsObject(env, id, t));
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
}  // namespace inproc

void RegisterPool(Napi::Env env, Napi::Object exports) {
  exports.Set("poolStart", Napi::Function::New(env, inproc::Start));
  exports.Set("poolStop", Napi::Function::New(env, inproc::Stop));
  exports.Set("poolReload", Napi::Function::New(env, inproc::Reload));
  exports.Set("poolUpdate", Napi::Function::New(env, inproc::Update));
  exports.Set("poolQuiesced", Napi::Function::New(env, inproc::QuiescedCall));
  exports.Set("poolStats", Napi::Function::New(env, inproc::Stats));
  napi_add_env_cleanup_hook(env, inproc::CleanupAll, nullptr);
}

}  // namespace galette
