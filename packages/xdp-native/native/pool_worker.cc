// The in-process pool's hot path: a worker thread's loop and one frame through the NFs
// (see pool.h; the hops themselves are nf_hops.h's).
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nf_hops.h"
#include "pool.h"

namespace galette {
namespace inproc {

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

namespace {

// RunHops's hooks for this pool: its counters, no host stack for PASS, no traces.
struct PoolHops {
  Worker* w;
  bool CanPass() const { return false; }
  void Count(shm::CounterIndex k, uint64_t n = 1) { w->stats.At(k).Add(n); }
  void Calling(uint32_t) {}
  void Returned() {}
  void CountCall(uint32_t instance, uint64_t ns) {
    InstanceStats& is = w->instances[instance];
    is.calls.Add(1);
    is.nanoseconds.Add(ns);
  }
  void CountVariant(uint32_t instance, uint32_t variant) { w->instances[instance].variants[variant].Add(1); }
  void Hopped(uint32_t, uint32_t, const galette_action&, uint64_t) {}
};

}  // namespace

// Runs one frame to completion. Returns true with `out` set when the frame is to be
// transmitted; false when it is to be recycled (every such outcome is counted).
bool Worker::Process(Pool* pool, const InstanceTable* table, uint64_t addr, uint32_t len, xdp_desc* out) {
  uint8_t* base = static_cast<uint8_t*>(pool->area);
  uint64_t frame = pool->FrameOf(addr);
  uint64_t offset = addr - frame;
  if (offset < sizeof(galette_upcall_meta) || offset + len > pool->frame_size) {
    stats.badMeta.Add(1);
    return false;
  }
  galette_upcall_meta meta;
  memcpy(&meta, base + addr - sizeof meta, sizeof meta);
  meta.action &= 0x7fffffffu;  // GALETTE_UPCALL_TRACED: this baseline pool writes no trace records
  PoolHops hooks{this};
  return RunHops(table, meta, base, frame, pool->frame_size, addr, len, out, hooks) != kHopsDropped;
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
      if (spin.KeepLooping(pool->tx_in_flight.load(std::memory_order_relaxed))) continue;
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

}  // namespace inproc
}  // namespace galette
