// BPF objects: open an ELF (path or bytes), prepare maps and read-only data, load, and
// hand out program and map fds. Load failures carry the verifier log of the failing program.
#include <linux/btf.h>
#include <malloc.h>

#include <map>
#include <memory>

#include "common.h"
#include "exports.h"

extern "C" {
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
}

namespace galette {
namespace {

// Large enough for level-1 logs of big programs; with a caller-provided buffer libbpf
// cannot grow it, and an overflowing log turns the real error into ENOSPC.
constexpr size_t kVerifierLogSize = 16u << 20;

struct Object {
  bpf_object* obj = nullptr;
  std::string source;        // path or "<buffer:name>", for error context
  std::vector<uint8_t> elf;  // keeps the bytes of an object opened from a Buffer alive
  bool loaded = false;
  // Names as the ELF declares them. libbpf 1.1 renames a map to the kernel name of the
  // map it reuses (bpf_map__reuse_fd, pinned reuse), so lookups must not go by its name.
  std::vector<std::pair<std::string, bpf_map*>> maps;
};

Object* Get(const Napi::CallbackInfo& info, size_t i = 0) {
  if (!info[i].IsExternal()) ThrowType(info.Env(), "expected a BPF object handle");
  Object* o = info[i].As<Napi::External<Object>>().Data();
  if (!o->obj) ThrowType(info.Env(), "BPF object " + o->source + " is closed");
  return o;
}

void Finalize(Napi::Env, Object* o) {
  if (o->obj) bpf_object__close(o->obj);
  delete o;
}

bpf_map* FindMap(Napi::Env env, Object* o, const std::string& name) {
  for (auto& [n, m] : o->maps)
    if (n == name) return m;
  std::string names;
  for (auto& [n, m] : o->maps) names += (names.empty() ? "" : ", ") + n;
  ThrowErrno(env, ENOENT, "object " + o->source + " has no map named '" + name + "' (maps: " + names + ")",
             {{"object", o->source}, {"map", name}});
}

// open(pathOrBuffer, name?) -> handle
Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto o = std::make_unique<Object>();
  LibbpfCapture capture;
  if (info[0].IsBuffer()) {
    auto buf = info[0].As<Napi::Buffer<uint8_t>>();
    std::string name = IsSet(info, 1) ? ArgString(info, 1, "name") : "galette_obj";
    o->source = "<buffer:" + name + ">";
    o->elf.assign(buf.Data(), buf.Data() + buf.Length());
    LIBBPF_OPTS(bpf_object_open_opts, opts, .object_name = name.c_str());
    o->obj = bpf_object__open_mem(o->elf.data(), o->elf.size(), &opts);
  } else {
    o->source = ArgString(info, 0, "path");
    o->obj = bpf_object__open_file(o->source.c_str(), nullptr);
  }
  if (!o->obj) ThrowErrno(env, errno, "open BPF object " + o->source, {{"object", o->source}}, capture.Text());
  bpf_map* m;
  bpf_object__for_each_map(m, o->obj) o->maps.emplace_back(bpf_map__name(m), m);
  Object* raw = o.release();
  return Napi::External<Object>::New(env, raw, Finalize);
}

// programs(h) -> [{name, section, type}], maps(h) -> [{name, type, keySize, valueSize, maxEntries}]
Napi::Value Programs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Object* o = Get(info);
  Napi::Array out = Napi::Array::New(env);
  bpf_program* p;
  uint32_t i = 0;
  bpf_object__for_each_program(p, o->obj) {
    Napi::Object e = Napi::Object::New(env);
    e.Set("name", bpf_program__name(p));
    e.Set("section", bpf_program__section_name(p));
    e.Set("type", static_cast<double>(bpf_program__type(p)));
    e.Set("fd", o->loaded ? bpf_program__fd(p) : -1);
    out.Set(i++, e);
  }
  return out;
}

Napi::Value Maps(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Object* o = Get(info);
  Napi::Array out = Napi::Array::New(env);
  uint32_t i = 0;
  for (auto& [name, m] : o->maps) {
    Napi::Object e = Napi::Object::New(env);
    e.Set("name", name);
    e.Set("type", static_cast<double>(bpf_map__type(m)));
    e.Set("keySize", bpf_map__key_size(m));
    e.Set("valueSize", bpf_map__value_size(m));
    e.Set("maxEntries", bpf_map__max_entries(m));
    e.Set("fd", o->loaded ? bpf_map__fd(m) : -1);
    out.Set(i++, e);
  }
  return out;
}

// reuseMap(h, name, fd): the object uses an existing map instead of creating its own.
Napi::Value ReuseMap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Object* o = Get(info);
  std::string name = ArgString(info, 1, "map name");
  int fd = ArgInt(info, 2, "map fd");
  if (o->loaded) ThrowType(env, "reuseMap('" + name + "') on " + o->source + " after load");
  LibbpfCapture capture;
  int err = bpf_map__reuse_fd(FindMap(env, o, name), fd);
  if (err)
    ThrowErrno(env, err, "reuse fd " + std::to_string(fd) + " for map '" + name + "' of " + o->source,
               {{"object", o->source}, {"map", name}}, capture.Text());
  return env.Undefined();
}

// pinMap(h, name, path): load reuses the pinned map at path if compatible, else creates and pins it.
Napi::Value PinMap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Object* o = Get(info);
  std::string name = ArgString(info, 1, "map name");
  std::string path = ArgString(info, 2, "pin path");
  if (o->loaded) ThrowType(env, "pinMap('" + name + "') on " + o->source + " after load");
  int err = bpf_map__set_pin_path(FindMap(env, o, name), path.c_str());
  if (err)
    ThrowErrno(env, err, "set pin path " + path + " for map '" + name + "' of " + o->source,
               {{"object", o->source}, {"map", name}, {"path", path}});
  return env.Undefined();
}

// setRodata(h, varName, bytes): overwrite one `const volatile` global before load.
Napi::Value SetRodata(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Object* o = Get(info);
  std::string var = ArgString(info, 1, "variable name");
  auto bytes = ArgBuffer(info, 2, "value");
  Props ctx{{"object", o->source}, {"variable", var}};
  if (o->loaded) ThrowType(env, "setRodata('" + var + "') on " + o->source + " after load");
  const btf* b = bpf_object__btf(o->obj);
  if (!b) ThrowErrno(env, ENOENT, o->source + " has no BTF, cannot find read-only variable '" + var + "'", ctx);
  int sec_id = btf__find_by_name_kind(b, ".rodata", BTF_KIND_DATASEC);
  if (sec_id < 0) ThrowErrno(env, ENOENT, o->source + " has no .rodata section (variable '" + var + "')", ctx);
  const btf_type* sec = btf__type_by_id(b, sec_id);
  const btf_var_secinfo* vsi = btf_var_secinfos(sec);
  std::string names;
  for (int i = 0; i < btf_vlen(sec); i++, vsi++) {
    const btf_type* v = btf__type_by_id(b, vsi->type);
    std::string vname = btf__name_by_offset(b, v->name_off);
    names += (names.empty() ? "" : ", ") + vname;
    if (var != vname) continue;
    if (vsi->size != bytes.Length())
      ThrowErrno(env, EINVAL,
                 "read-only variable '" + var + "' of " + o->source + " is " + std::to_string(vsi->size) +
                     " bytes, value has " + std::to_string(bytes.Length()),
                 ctx);
    bpf_map* m;
    bpf_object__for_each_map(m, o->obj) {
      std::string n = bpf_map__name(m);
      if (!bpf_map__is_internal(m) || n.size() < 7 || n.compare(n.size() - 7, 7, ".rodata") != 0) continue;
      size_t size = 0;
      const void* cur = bpf_map__initial_value(m, &size);
      if (!cur || vsi->offset + vsi->size > size)
        ThrowErrno(env, EINVAL, "read-only data of " + o->source + " does not cover '" + var + "'", ctx);
      std::vector<uint8_t> data(static_cast<const uint8_t*>(cur), static_cast<const uint8_t*>(cur) + size);
      memcpy(data.data() + vsi->offset, bytes.Data(), vsi->size);
      int err = bpf_map__set_initial_value(m, data.data(), data.size());
      if (err) ThrowErrno(env, err, "set read-only variable '" + var + "' of " + o->source, ctx);
      return env.Undefined();
    }
    ThrowErrno(env, ENOENT, o->source + " has no .rodata map", ctx);
  }
  ThrowErrno(env, ENOENT, o->source + " has no read-only variable named '" + var + "' (it has: " + names + ")", ctx);
}

// load(h, logLevel): on failure the error carries the failing program's verifier log.
Napi::Value Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Object* o = Get(info);
  uint32_t log_level = IsSet(info, 1) ? ArgU32(info, 1, "logLevel") : 0;
  if (o->loaded) ThrowType(env, o->source + " is already loaded");
  // Declared first, so it runs last: glibc keeps freed heap pages for reuse, and what a load
  // frees (the verifier log buffers, libbpf's parsed kernel BTF) is megabytes the
  // long-running agent would hold for nothing.
  struct TrimHeap {
    ~TrimHeap() { malloc_trim(0); }
  } trim;
  struct Free {
    void operator()(char* p) const { free(p); }
  };
  std::map<std::string, std::unique_ptr<char, Free>> logs;
  bpf_program* p;
  bpf_object__for_each_program(p, o->obj) {
    // calloc: the kernel writes only what it logs, so untouched pages are never committed.
    std::unique_ptr<char, Free> buf(static_cast<char*>(calloc(1, kVerifierLogSize)));
    if (!buf) ThrowErrno(env, ENOMEM, "allocate verifier log for " + o->source);
    bpf_program__set_log_buf(p, buf.get(), kVerifierLogSize);
    // Level 0 still yields a log on failure: libbpf retries the failed load at level 1.
    if (log_level) bpf_program__set_log_level(p, log_level);
    logs[bpf_program__name(p)] = std::move(buf);
  }
  LibbpfCapture capture;
  int err = bpf_object__load(o->obj);
  // Detach our buffers before they are freed; libbpf must not keep pointers to them.
  bpf_object__for_each_program(p, o->obj) bpf_program__set_log_buf(p, nullptr, 0);
  if (!err) {
    o->loaded = true;
    return env.Undefined();
  }
  // libbpf stops at the first program the kernel refuses and names it in its warning.
  std::string failed;
  const std::string text = capture.Text();
  const std::string marker = "': failed to load";
  size_t at = text.find(marker);
  if (at != std::string::npos) {
    size_t start = text.rfind("prog '", at);
    if (start != std::string::npos) failed = text.substr(start + 6, at - start - 6);
  }
  std::string details;
  auto log = logs.find(failed);
  if (log != logs.end() && log->second.get()[0] != '\0')
    details = "verifier log of program '" + failed + "':\n" + std::string(log->second.get());
  if (details.empty()) details = capture.Text();
  std::string what = "load BPF object " + o->source + (failed.empty() ? "" : " (program '" + failed + "')");
  Napi::Error e = ErrnoError(env, err, what, {{"object", o->source}, {"program", failed}}, details);
  std::string vlog = (log != logs.end()) ? std::string(log->second.get()) : "";
  e.Set("verifierLog", vlog);
  e.Set("libbpfLog", capture.Text());
  throw e;
}

Napi::Value ProgramFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Object* o = Get(info);
  std::string name = ArgString(info, 1, "program name");
  bpf_program* p = bpf_object__find_program_by_name(o->obj, name.c_str());
  if (!p) {
    std::string names;
    bpf_program* it;
    bpf_object__for_each_program(it, o->obj) names += std::string(names.empty() ? "" : ", ") + bpf_program__name(it);
    ThrowErrno(env, ENOENT, "object " + o->source + " has no program named '" + name + "' (programs: " + names + ")",
               {{"object", o->source}, {"program", name}});
  }
  if (!o->loaded) ThrowType(env, "program '" + name + "' of " + o->source + " is not loaded yet");
  return Napi::Number::New(env, bpf_program__fd(p));
}

Napi::Value MapFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Object* o = Get(info);
  std::string name = ArgString(info, 1, "map name");
  bpf_map* m = FindMap(env, o, name);
  if (!o->loaded) ThrowType(env, "map '" + name + "' of " + o->source + " is not created before load");
  return Napi::Number::New(env, bpf_map__fd(m));
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  if (!info[0].IsExternal()) ThrowType(info.Env(), "expected a BPF object handle");
  Object* o = info[0].As<Napi::External<Object>>().Data();
  if (o->obj) bpf_object__close(o->obj);
  o->obj = nullptr;
  o->elf.clear();
  return info.Env().Undefined();
}

// heapTrim(): returns the C heap's free pages to the kernel (glibc keeps them for reuse).
Napi::Value HeapTrim(const Napi::CallbackInfo& info) {
  malloc_trim(0);
  return info.Env().Undefined();
}

}  // namespace

void RegisterObject(Napi::Env env, Napi::Object exports) {
  exports.Set("objectOpen", Napi::Function::New(env, Open));
  exports.Set("objectPrograms", Napi::Function::New(env, Programs));
  exports.Set("objectMaps", Napi::Function::New(env, Maps));
  exports.Set("objectReuseMap", Napi::Function::New(env, ReuseMap));
  exports.Set("objectPinMap", Napi::Function::New(env, PinMap));
  exports.Set("objectSetRodata", Napi::Function::New(env, SetRodata));
  exports.Set("objectLoad", Napi::Function::New(env, Load));
  exports.Set("objectProgramFd", Napi::Function::New(env, ProgramFd));
  exports.Set("objectMapFd", Napi::Function::New(env, MapFd));
  exports.Set("objectClose", Napi::Function::New(env, Close));
  exports.Set("heapTrim", Napi::Function::New(env, HeapTrim));
}

}  // namespace galette
