// Maps and fds: create, pin, open pinned, CRUD and iteration with Buffers, object info.
// Callers pass the map's key/value sizes (the TS layer caches them from mapInfo) and they
// are checked against the Buffers, so the kernel never reads or writes past one.
#include <unistd.h>

#include "common.h"
#include "exports.h"

extern "C" {
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
}

namespace galette {
namespace {

std::string FdCtx(int fd) { return "map fd " + std::to_string(fd); }

void CheckSize(Napi::Env env, const Napi::Buffer<uint8_t>& buf, uint32_t expected, const char* what, int fd) {
  if (buf.Length() != expected)
    ThrowErrno(env, EINVAL,
               std::string(what) + " for " + FdCtx(fd) + " is " + std::to_string(buf.Length()) +
                   " bytes, the map needs " + std::to_string(expected));
}

// mapCreate(type, name, keySize, valueSize, maxEntries, flags) -> fd
Napi::Value MapCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t type = ArgU32(info, 0, "type");
  std::string name = ArgString(info, 1, "name");
  uint32_t key_size = ArgU32(info, 2, "keySize");
  uint32_t value_size = ArgU32(info, 3, "valueSize");
  uint32_t max_entries = ArgU32(info, 4, "maxEntries");
  uint32_t flags = ArgU32(info, 5, "flags");
  LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = flags);
  // The kernel keeps at most 15 name characters; longer names are refused with EINVAL.
  std::string kname = name.substr(0, 15);
  int fd = bpf_map_create(static_cast<bpf_map_type>(type), kname.c_str(), key_size, value_size, max_entries, &opts);
  if (fd < 0)
    ThrowErrno(env, errno,
               "create map '" + name + "' (type " + std::to_string(type) + ", key " + std::to_string(key_size) +
                   " B, value " + std::to_string(value_size) + " B, " + std::to_string(max_entries) +
                   " entries, flags " + std::to_string(flags) + ")",
               {{"map", name}});
  return Napi::Number::New(env, fd);
}

Napi::Value ObjPin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  std::string path = ArgString(info, 1, "path");
  if (bpf_obj_pin(fd, path.c_str()) != 0)
    ThrowErrno(env, errno, "pin fd " + std::to_string(fd) + " at " + path, {{"path", path}});
  return env.Undefined();
}

Napi::Value ObjGet(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "path");
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) ThrowErrno(env, errno, "open pinned BPF object " + path, {{"path", path}});
  return Napi::Number::New(env, fd);
}

Napi::Value MapFdById(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t id = ArgU32(info, 0, "map id");
  int fd = bpf_map_get_fd_by_id(id);
  if (fd < 0) ThrowErrno(env, errno, "open map id " + std::to_string(id));
  return Napi::Number::New(env, fd);
}

Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  if (close(fd) != 0) ThrowErrno(env, errno, "close fd " + std::to_string(fd));
  return env.Undefined();
}

Napi::Value MapInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  bpf_map_info mi{};
  uint32_t len = sizeof mi;
  if (bpf_obj_get_info_by_fd(fd, &mi, &len) != 0) ThrowErrno(env, errno, "get info of " + FdCtx(fd));
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", mi.id);
  o.Set("type", mi.type);
  o.Set("name", mi.name);
  o.Set("keySize", mi.key_size);
  o.Set("valueSize", mi.value_size);
  o.Set("maxEntries", mi.max_entries);
  o.Set("flags", mi.map_flags);
  return o;
}

Napi::Value ProgInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  bpf_prog_info pi{};
  uint32_t len = sizeof pi;
  if (bpf_obj_get_info_by_fd(fd, &pi, &len) != 0)
    ThrowErrno(env, errno, "get info of program fd " + std::to_string(fd));
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", pi.id);
  o.Set("type", pi.type);
  o.Set("name", pi.name);
  char tag[2 * sizeof pi.tag + 1];
  for (size_t i = 0; i < sizeof pi.tag; i++) snprintf(tag + 2 * i, 3, "%02x", pi.tag[i]);
  o.Set("tag", std::string(tag));
  // kernel bpf_stats: counted only while stats are enabled, and only for a program the kernel
  // enters itself (not one reached by a tail call)
  o.Set("runTimeNs", static_cast<double>(pi.run_time_ns));
  o.Set("runCount", static_cast<double>(pi.run_cnt));
  return o;
}

// enableStats() -> fd: kernel bpf_stats (run time and count of every program) stay on while
// this fd is open (BPF_ENABLE_STATS; refcounted, so concurrent measurers do not race).
Napi::Value EnableStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
  if (fd < 0) ThrowErrno(env, errno, "enable bpf_stats (BPF_ENABLE_STATS)");
  return Napi::Number::New(env, fd);
}

// mapLookup(fd, key, keySize, valueSize) -> Buffer | null (no entry)
Napi::Value MapLookup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  auto key = ArgBuffer(info, 1, "key");
  CheckSize(env, key, ArgU32(info, 2, "keySize"), "key", fd);
  uint32_t value_size = ArgU32(info, 3, "valueSize");
  auto value = Napi::Buffer<uint8_t>::New(env, value_size);
  if (bpf_map_lookup_elem(fd, key.Data(), value.Data()) != 0) {
    if (errno == ENOENT) return env.Null();
    ThrowErrno(env, errno, "lookup in " + FdCtx(fd));
  }
  return value;
}

// mapUpdate(fd, key, keySize, value, valueSize, flags)
Napi::Value MapUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  auto key = ArgBuffer(info, 1, "key");
  CheckSize(env, key, ArgU32(info, 2, "keySize"), "key", fd);
  auto value = ArgBuffer(info, 3, "value");
  CheckSize(env, value, ArgU32(info, 4, "valueSize"), "value", fd);
  uint32_t flags = ArgU32(info, 5, "flags");
  if (bpf_map_update_elem(fd, key.Data(), value.Data(), flags) != 0) ThrowErrno(env, errno, "update " + FdCtx(fd));
  return env.Undefined();
}

// mapDelete(fd, key, keySize) -> true if deleted, false if there was no entry
Napi::Value MapDelete(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  auto key = ArgBuffer(info, 1, "key");
  CheckSize(env, key, ArgU32(info, 2, "keySize"), "key", fd);
  if (bpf_map_delete_elem(fd, key.Data()) != 0) {
    if (errno == ENOENT) return Napi::Boolean::New(env, false);
    ThrowErrno(env, errno, "delete from " + FdCtx(fd));
  }
  return Napi::Boolean::New(env, true);
}

// mapKeys(fd, keySize, limit) -> Buffer[]; walks get_next_key from the start.
Napi::Value MapKeys(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  uint32_t key_size = ArgU32(info, 1, "keySize");
  uint32_t limit = ArgU32(info, 2, "limit");
  Napi::Array out = Napi::Array::New(env);
  std::vector<uint8_t> cur(key_size), next(key_size);
  const void* prev = nullptr;
  for (uint32_t n = 0; n < limit; n++) {
    if (bpf_map_get_next_key(fd, prev, next.data()) != 0) {
      if (errno == ENOENT) return out;
      ThrowErrno(env, errno, "iterate " + FdCtx(fd));
    }
    out.Set(n, Napi::Buffer<uint8_t>::Copy(env, next.data(), key_size));
    cur.swap(next);
    prev = cur.data();
  }
  // A hash map being filled concurrently can yield more keys than it holds at any instant.
  return out;
}

Napi::Value NumPossibleCpus(const Napi::CallbackInfo& info) {
  int n = libbpf_num_possible_cpus();
  if (n < 0) ThrowErrno(info.Env(), n, "count possible CPUs");
  return Napi::Number::New(info.Env(), n);
}

}  // namespace

void RegisterMaps(Napi::Env env, Napi::Object exports) {
  exports.Set("mapCreate", Napi::Function::New(env, MapCreate));
  exports.Set("objPin", Napi::Function::New(env, ObjPin));
  exports.Set("objGet", Napi::Function::New(env, ObjGet));
  exports.Set("mapFdById", Napi::Function::New(env, MapFdById));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd));
  exports.Set("mapInfo", Napi::Function::New(env, MapInfo));
  exports.Set("progInfo", Napi::Function::New(env, ProgInfo));
  exports.Set("enableStats", Napi::Function::New(env, EnableStats));
  exports.Set("mapLookup", Napi::Function::New(env, MapLookup));
  exports.Set("mapUpdate", Napi::Function::New(env, MapUpdate));
  exports.Set("mapDelete", Napi::Function::New(env, MapDelete));
  exports.Set("mapKeys", Napi::Function::New(env, MapKeys));
  exports.Set("numPossibleCpus", Napi::Function::New(env, NumPossibleCpus));
}

}  // namespace galette
