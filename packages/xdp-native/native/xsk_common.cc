// See xsk_common.h.
#include "xsk_common.h"

#include <sys/socket.h>

#include "common.h"

namespace galette {

uint32_t PoolOptionU32(Napi::Env env, Napi::Object o, const char* key, uint32_t fallback, uint32_t min, uint32_t max) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsNumber()) ThrowType(env, std::string("worker pool option ") + key + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (d < min || d > max || d != static_cast<double>(static_cast<uint64_t>(d)))
    ThrowType(env, std::string("worker pool option ") + key + " must be an integer in [" + std::to_string(min) + ", " +
                       std::to_string(max) + "], got " + std::to_string(d));
  return static_cast<uint32_t>(d);
}

void RequirePow2(Napi::Env env, std::initializer_list<std::pair<const char*, uint32_t>> options) {
  for (const auto& [name, v] : options)
    if (!v || (v & (v - 1)))
      ThrowType(env, std::string("worker pool option ") + name + " must be a power of two, got " + std::to_string(v));
}

bpf_map_info MapInfo(Napi::Env env, int fd, const std::string& what) {
  bpf_map_info mi{};
  uint32_t len = sizeof mi;
  if (bpf_obj_get_info_by_fd(fd, &mi, &len) != 0)
    ThrowErrno(env, errno, "inspect " + what + " (fd " + std::to_string(fd) + ")");
  return mi;
}

XskMaps CheckXskMaps(Napi::Env env, int xsk_map_fd, int xsk_count_fd) {
  if (xsk_map_fd < 0 || xsk_count_fd < 0) ThrowType(env, "worker pool options xskMapFd and xskCountMapFd are required");
  bpf_map_info x = MapInfo(env, xsk_map_fd, "XSKMAP");
  if (x.type != BPF_MAP_TYPE_XSKMAP)
    ThrowErrno(env, EINVAL, "xskMapFd " + std::to_string(xsk_map_fd) + " is not an XSKMAP");
  bpf_map_info c = MapInfo(env, xsk_count_fd, "socket count map");
  if (c.type != BPF_MAP_TYPE_ARRAY || c.key_size != 4 || c.value_size != 4)
    ThrowErrno(env, EINVAL, "xskCountMapFd must be an ARRAY u32 -> u32 (galette_xsk_count)");
  return XskMaps{x.max_entries, c.max_entries};
}

xsk_umem_config UmemConfig(uint32_t frame_count, uint32_t frame_size) {
  xsk_umem_config c{};
  c.fill_size = frame_count;
  c.comp_size = frame_count;
  c.frame_size = frame_size;
  c.frame_headroom = 0;
  return c;
}

bool FillFrames(xsk_ring_prod* fq, uint32_t first, uint32_t n, uint32_t frame_size) {
  uint32_t idx = 0;
  if (xsk_ring_prod__reserve(fq, n, &idx) != n) return false;
  for (uint32_t i = 0; i < n; i++)
    *xsk_ring_prod__fill_addr(fq, idx + i) = static_cast<uint64_t>(first + i) * frame_size;
  xsk_ring_prod__submit(fq, n);
  return true;
}

bool SocketStats(int fd, xdp_statistics* out) {
  *out = xdp_statistics{};
  socklen_t len = sizeof *out;
  return fd >= 0 && getsockopt(fd, SOL_XDP, XDP_STATISTICS, out, &len) == 0;
}

void AddStats(xdp_statistics* to, const xdp_statistics& s) {
  to->rx_dropped += s.rx_dropped;
  to->rx_invalid_descs += s.rx_invalid_descs;
  to->tx_invalid_descs += s.tx_invalid_descs;
  to->rx_ring_full += s.rx_ring_full;
  to->rx_fill_ring_empty_descs += s.rx_fill_ring_empty_descs;
  to->tx_ring_empty_descs += s.tx_ring_empty_descs;
}

Napi::Object KernelStatsObject(Napi::Env env, const xdp_statistics& s) {
  Napi::Object k = Napi::Object::New(env);
  k.Set("rxDropped", static_cast<double>(s.rx_dropped));
  k.Set("rxInvalidDescs", static_cast<double>(s.rx_invalid_descs));
  k.Set("txInvalidDescs", static_cast<double>(s.tx_invalid_descs));
  k.Set("rxRingFull", static_cast<double>(s.rx_ring_full));
  k.Set("rxFillRingEmpty", static_cast<double>(s.rx_fill_ring_empty_descs));
  k.Set("txRingEmpty", static_cast<double>(s.tx_ring_empty_descs));
  return k;
}

Napi::Object InstanceStatsObject(Napi::Env env, uint32_t id, const InstanceTotals& t) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", id);
  o.Set("calls", static_cast<double>(t.calls));
  o.Set("nanoseconds", static_cast<double>(t.nanoseconds));
  Napi::Array va = Napi::Array::New(env, GALETTE_MAX_ACTIONS);
  for (uint32_t v = 0; v < GALETTE_MAX_ACTIONS; v++) va.Set(v, static_cast<double>(t.variants[v]));
  o.Set("variants", va);
  return o;
}

}  // namespace galette
