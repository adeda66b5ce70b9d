// Readers for packet-trace records: a BPF ring buffer (written by XDP programs) and a BPF
// queue map (written by the unprivileged workers). Both are drained without blocking; the
// caller polls on a timer.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <memory>
#include <string>
#include <vector>

#include "common.h"
#include "exports.h"

namespace galette {
namespace {

struct Ring {
  ring_buffer* rb = nullptr;
  std::vector<std::string> pending;  // records copied out by the callback of one consume
};

int OnRecord(void* ctx, void* data, size_t size) {
  static_cast<Ring*>(ctx)->pending.emplace_back(static_cast<const char*>(data), size);
  return 0;
}

void FinalizeRing(Napi::Env, Ring* r) {
  if (r->rb) ring_buffer__free(r->rb);
  delete r;
}

Ring* GetRing(const Napi::CallbackInfo& info) {
  if (!info[0].IsExternal()) ThrowType(info.Env(), "expected a ring buffer handle");
  Ring* r = info[0].As<Napi::External<Ring>>().Data();
  if (!r->rb) ThrowType(info.Env(), "ring buffer reader is closed");
  return r;
}

// ringbufOpen(mapFd) -> handle
Napi::Value RingbufOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "mapFd");
  auto r = std::make_unique<Ring>();
  LibbpfCapture capture;
  r->rb = ring_buffer__new(fd, OnRecord, r.get(), nullptr);
  if (!r->rb) ThrowErrno(env, errno, "open ring buffer map fd " + std::to_string(fd), {}, capture.Text());
  return Napi::External<Ring>::New(env, r.release(), FinalizeRing);
}

// ringbufConsume(handle, max) -> Buffer[] (at most about `max` records: libbpf consumes whole batches)
Napi::Value RingbufConsume(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Ring* r = GetRing(info);
  r->pending.clear();
  int n = ring_buffer__consume(r->rb);
  if (n < 0) ThrowErrno(env, -n, "consume ring buffer");
  Napi::Array out = Napi::Array::New(env, r->pending.size());
  for (size_t i = 0; i < r->pending.size(); i++)
    out.Set(i, Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t*>(r->pending[i].data()),
                                           r->pending[i].size()));
  r->pending.clear();
  return out;
}

Napi::Value RingbufClose(const Napi::CallbackInfo& info) {
  if (!info[0].IsExternal()) ThrowType(info.Env(), "expected a ring buffer handle");
  Ring* r = info[0].As<Napi::External<Ring>>().Data();
  if (r->rb) ring_buffer__free(r->rb);
  r->rb = nullptr;
  return info.Env().Undefined();
}

// queuePop(mapFd, valueSize, max) -> Buffer[]: pops until the queue is empty or `max` values
Napi::Value QueuePop(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "mapFd");
  uint32_t size = ArgU32(info, 1, "valueSize");
  uint32_t max = ArgU32(info, 2, "max");
  Napi::Array out = Napi::Array::New(env);
  std::vector<uint8_t> buf(size);
  for (uint32_t k = 0; k < max; k++) {
    if (bpf_map_lookup_and_delete_elem(fd, nullptr, buf.data()) != 0) {
      if (errno == ENOENT) break;
      ThrowErrno(env, errno, "pop from queue map fd " + std::to_string(fd));
    }
    out.Set(k, Napi::Buffer<uint8_t>::Copy(env, buf.data(), size));
  }
  return out;
}

}  // namespace

void RegisterTrace(Napi::Env env, Napi::Object exports) {
  exports.Set("ringbufOpen", Napi::Function::New(env, RingbufOpen));
  exports.Set("ringbufConsume", Napi::Function::New(env, RingbufConsume));
  exports.Set("ringbufClose", Napi::Function::New(env, RingbufClose));
  exports.Set("queuePop", Napi::Function::New(env, QueuePop));
}

}  // namespace galette
