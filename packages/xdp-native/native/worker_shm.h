// Memory shared by the agent (addon) and its unprivileged NF worker process, and the
// control messages between them.
//
// The agent creates this region (a memfd) with the pool and keeps it for the pool's life,
// so counters survive worker restarts and the agent reads them without asking the worker.
// The worker writes it; the agent only reads it (and never trusts it for a decision that
// matters to anything but this pool's own counters and crash attribution).
//
// Layout: Header | ThreadShm[workers] | InstanceCounters[workers][GALETTE_MAX_INSTANCES].
#pragma once

#include <stddef.h>
#include <stdint.h>

extern "C" {
#include "galette_abi.h"
}

namespace galette {
namespace shm {

constexpr uint32_t kMagic = 0x474e4657;  // "GNFW"
constexpr uint32_t kVersion = 4;
// Socket groups: one per (port, RX queue) of the installation (a group = the sockets bound
// to one interface queue, with that queue's own UMEM registration, fill and completion
// rings), port-major: port 0's queues, then port 1's. Each worker thread holds one socket
// of every group; frame i of the UMEM belongs to group i / (frames / groups) and always
// returns to that group's fill ring.
constexpr uint32_t kMaxPorts = 2;
constexpr uint32_t kMaxQueues = 16;  // RX queues served per port
constexpr uint32_t kMaxGroups = kMaxPorts * kMaxQueues;
// Largest RX batch and completion batch a worker thread takes at once (journal size).
constexpr uint32_t kMaxBatch = 1024;
constexpr uint32_t kNoInstance = 0xffffffffu;

#define GALETTE_WORKER_COUNTERS(X)                                                           \
  X(rx, "frames received")                                                                   \
  X(tx, "frames transmitted")                                                                \
  X(drop, "DROP verdicts")                                                                   \
  X(abort, "ABORT verdicts")                                                                 \
  X(passUnsupported, "PASS verdicts, dropped: the pool has no TAP device to the host stack") \
  X(passed, "PASS verdicts written to the port's TAP device (the host stack)")               \
  X(redirectUnsupported, "REDIRECT or unknown action kinds, dropped")                        \
  X(badMeta, "frames whose upcall metadata names no configured instance/action")             \
  X(hopLimit, "frames dropped after kMaxHops NF calls (cycle)")                              \
  X(noNf, "frames sent to an instance without a native library")                             \
  X(badVariant, "NF returned a variant index outside its action table")                      \
  X(badPacket, "NF moved data/len outside the frame")                                        \
  X(txRingFull, "frames dropped because the TX ring stayed full")                            \
  X(txErrors, "failed TX wake-ups")                                                          \
  X(wakeups, "wake-up syscalls (TX kicks, fill-ring wake-ups, polls)")                       \
  X(batches, "non-empty RX batches")                                                         \
  X(nfCalls, "native NF invocations")                                                        \
  X(nfNanoseconds, "time spent inside native NFs")

enum CounterIndex : uint32_t {
#define X(name, doc) k_##name,
  GALETTE_WORKER_COUNTERS(X)
#undef X
      kCounterCount
};

enum ThreadState : uint32_t { kStarting = 0, kRunning = 1, kFailed = 2, kStopped = 3 };

// What one worker thread holds outside the rings, written before each ring index it moves
// so that, after the worker process died at any instruction, the next worker can tell
// exactly which frames died with it (see RecoverFrames in worker_main.cc). Every ring
// index below is the value the thread read before moving that index; a `*_valid` flag
// says the step was started.
struct Journal {
  uint32_t rx_valid;  // a batch was taken from the RX ring (consumer moved past rx_start)
  uint32_t rx_start;
  uint32_t rx_n;
  uint32_t rx_group;  // of this thread's socket in that group
  // per group g (the TX ring of this thread's socket in g, g's completion and fill rings):
  uint32_t tx_valid[kMaxGroups];  // its TX part was reserved; submitted iff the TX producer moved
  uint32_t tx_start[kMaxGroups];
  uint32_t tx_n[kMaxGroups];
  uint32_t cq_valid[kMaxGroups];  // completions were taken; released iff the consumer moved
  uint32_t cq_start[kMaxGroups];
  uint32_t cq_n[kMaxGroups];
  uint32_t fq_valid[kMaxGroups];  // frames were reserved on the fill ring; submitted iff
  uint32_t fq_start[kMaxGroups];  // the fill producer moved
  uint64_t rx_addr[kMaxBatch];
  uint64_t tx_addr[kMaxGroups][kMaxBatch];
  uint64_t cq_addr[kMaxGroups][kMaxBatch];
};

struct alignas(64) ThreadShm {
  uint64_t counters[kCounterCount];
  uint32_t state;                 // ThreadState
  uint32_t current_instance;      // the NF instance running now (kNoInstance between calls)
  uint64_t holding;               // generation of the table this thread may read (0: none)
  uint64_t last_generation;       // generation of the last table it picked up
  uint64_t group_rx[kMaxGroups];  // frames received per group (port, queue)
  Journal journal;
};

struct InstanceCounters {
  uint64_t calls;
  uint64_t nanoseconds;
  uint64_t variants[GALETTE_MAX_ACTIONS];
};

struct alignas(64) Header {
  uint32_t magic;
  uint32_t version;
  uint32_t workers;
  uint32_t frame_count;
  uint32_t frame_size;
  uint32_t batch_size;
  uint32_t groups;             // socket groups: queues[0] + queues[1]
  uint32_t ports;              // 1 or 2
  uint32_t queues[kMaxPorts];  // RX queues served per port (group of port 1, queue q = queues[0] + q)
  uint32_t pad0;
  uint64_t published;        // generation of the table the worker runs
  uint64_t crash_recovered;  // frames found in a dead worker's hands and returned to the fill ring
  uint64_t worker_pid;       // the worker process that wrote this last
  uint32_t keeps_cap_bpf;    // 1: the kernel gates bpf() on CAP_BPF, the worker kept only that
  uint32_t retired_count;    // tables replaced but not freed yet (a thread may hold them)
  uint64_t oldest_retired;   // generation of the oldest of those (0: none)
  // Binding: the agent creates the sockets and sizes their rings but does not bind them;
  // the first worker maps every ring and then binds (some kernels, 6.1 among them, refuse to
  // map a bound socket's rings), in socket order, counting in bound_sockets.
  uint32_t ifindex[kMaxPorts];  // of each port, in the sockets' namespace
  uint32_t bind_flags;          // of a group's first socket (the others share its UMEM)
  uint32_t bound_sockets;       // sockets 0 .. bound_sockets - 1 are bound
};

inline size_t RegionSize(uint32_t workers) {
  return sizeof(Header) + sizeof(ThreadShm) * workers + sizeof(InstanceCounters) * GALETTE_MAX_INSTANCES * workers;
}
inline ThreadShm* Threads(void* base) {
  return reinterpret_cast<ThreadShm*>(static_cast<uint8_t*>(base) + sizeof(Header));
}
inline InstanceCounters* Instances(void* base, uint32_t workers, uint32_t thread) {
  return reinterpret_cast<InstanceCounters*>(static_cast<uint8_t*>(base) + sizeof(Header) +
                                             sizeof(ThreadShm) * workers) +
         static_cast<size_t>(thread) * GALETTE_MAX_INSTANCES;
}

// Relaxed single-writer counters: the worker thread that owns them stores, others load.
inline uint64_t Load(const uint64_t* p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
inline uint32_t Load32(const uint32_t* p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
inline void Add(uint64_t* p, uint64_t n) {
  __atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

// ---- control messages, agent -> worker, over a SOCK_SEQPACKET pair -----------------------
// An update is a run of kMsgInstance messages (one per instance, its map fds attached with
// SCM_RIGHTS, its library path after the fixed part) closed by one kMsgCommit. The worker
// builds the table from the run and publishes it whole, or rejects it whole.
constexpr uint32_t kMsgInstance = 1;
constexpr uint32_t kMsgCommit = 2;
constexpr uint32_t kMaxLibraryPath = 4096;

// What the worker needs to map an attached map fd (the agent reads it with bpf(); the
// worker's seccomp filter allows no BPF_OBJ_GET_INFO_BY_FD).
struct MsgMap {
  uint32_t type;
  uint32_t flags;
  uint32_t value_size;
  uint32_t max_entries;
};

struct MsgInstance {
  uint32_t type;  // kMsgInstance
  uint32_t id;
  uint32_t map_count;    // fds attached
  uint32_t library_len;  // bytes of path following this struct (0: no library)
  galette_action actions[GALETTE_MAX_ACTIONS];
  MsgMap maps[GALETTE_MAX_MAPS];  // [0, map_count): the attached fds, in order
};

struct MsgCommit {
  uint32_t type;   // kMsgCommit
  uint32_t count;  // instances sent since the last commit
  uint64_t generation;
};

// Fixed fds of the worker process (the agent passes them at spawn).
constexpr int kFdControl = 3;
constexpr int kFdUmem = 4;
constexpr int kFdShm = 5;
constexpr int kFdFirstSocket = 6;

}  // namespace shm
}  // namespace galette
