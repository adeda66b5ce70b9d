// What the worker threads of both AF_XDP pools share (the in-process pool's, pool_worker.cc,
// and the NF worker process's, worker_main.cc): their limits and when an idle thread sleeps.
#pragma once

#include <time.h>

#include <cstdint>

namespace galette {

// Longest userland NF path; a cycle in the action tables ends here instead of spinning.
constexpr uint32_t kMaxHops = 64;
constexpr uint32_t kTxKickAttempts = 64;
// A blocking worker keeps looping instead of sleeping while transmitted frames await their
// completion (under load they come back, and the next RX batch arrives, within
// microseconds; the C baseline does the same), but only while the count of frames in
// flight keeps moving: when it has not moved for this long (peer gone, link down), the
// worker sleeps as usual.
constexpr uint64_t kInFlightSpinNs = 1000000;

inline uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// An idle thread's view of the frames in flight (its own state, no sharing).
struct InFlightSpin {
  int64_t seen = 0;
  uint64_t since = 0;
  // Whether to loop again rather than sleep, given the frames in flight now.
  bool KeepLooping(int64_t in_flight) {
    if (in_flight <= 0) {
      seen = 0;
      return false;
    }
    const uint64_t now = NowNs();
    if (in_flight != seen) {
      seen = in_flight;
      since = now;
    }
    return now - since < kInFlightSpinNs;
  }
};

}  // namespace galette
