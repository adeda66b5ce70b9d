// Shared mappings of BPF_F_MMAPABLE arrays for native NFs (struct galette_nf_map): the
// in-process pool and the worker process both build an instance's maps with these.
#ifndef GALETTE_MAP_VIEW_H
#define GALETTE_MAP_VIEW_H

#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>

#include "galette_abi.h"

namespace galette {

// Bytes to map for an array's values: the kernel stores them 8-byte aligned, page rounded.
inline size_t MappedArrayLength(uint32_t value_size, uint32_t max_entries) {
  size_t stride = (static_cast<size_t>(value_size) + 7) & ~static_cast<size_t>(7);
  size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return (stride * max_entries + page - 1) / page * page;
}

// The map as an NF sees it: its values mapped when it is an mmapable array, else fd only
// (bpf() from the NF). A failed mmap also leaves fd only: slower, never wrong.
inline galette_nf_map ViewMap(int fd, uint32_t type, uint32_t flags, uint32_t value_size, uint32_t max_entries) {
  galette_nf_map m{};
  m.fd = fd;
  if (type != BPF_MAP_TYPE_ARRAY || !(flags & BPF_F_MMAPABLE) || max_entries == 0) return m;
  void* p = mmap(nullptr, MappedArrayLength(value_size, max_entries), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return m;
  m.data = p;
  m.max_entries = max_entries;
  m.value_size = value_size;
  return m;
}

// Undoes ViewMap's mapping (the fd stays the caller's).
inline void UnviewMap(const galette_nf_map& m) {
  if (m.data) munmap(m.data, MappedArrayLength(m.value_size, m.max_entries));
}

}  // namespace galette

#endif
