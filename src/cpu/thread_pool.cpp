#include "cpu/thread_pool.hpp"

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

namespace hyperattn::cpu {

int resolve_threads(int requested) {
  const unsigned hw = std::thread::hardware_concurrency();
  const int cores = hw == 0 ? 1 : static_cast<int>(hw);
  // More threads than 4x the cores only costs memory (per-thread scratch) and thread starts;
  // results do not depend on the count, so a huge request is capped rather than refused.
  if (requested > 0) return std::min(requested, 4 * cores);
  return cores;
}

namespace {

// Runs worker(0) on the calling thread and worker(1..n-1) on their own threads; returns when all end.
void run_workers(int n, const std::function<void(int)>& worker) {
  if (n == 1) {
    worker(0);
    return;
  }
  std::vector<std::thread> pool;
  pool.reserve(static_cast<std::size_t>(n - 1));
  for (int t = 1; t < n; ++t) pool.emplace_back(worker, t);
  worker(0);
  for (std::thread& th : pool) th.join();
}

}  // namespace

void parallel_for(std::int64_t items, int threads,
                  const std::function<void(std::int64_t, int)>& body) {
  if (items <= 0) return;
  const int n = static_cast<int>(std::min<std::int64_t>(std::max(threads, 1), items));
  std::atomic<std::int64_t> next{0};
  auto worker = [&](int thread) {
    for (std::int64_t item = next.fetch_add(1); item < items; item = next.fetch_add(1)) body(item, thread);
  };
  run_workers(n, worker);
}

void parallel_for_lookahead(std::int64_t items, int threads,
                            const std::function<void(std::int64_t, std::int64_t, int)>& body) {
  if (items <= 0) return;
  const int n = static_cast<int>(std::min<std::int64_t>(std::max(threads, 1), items));
  std::atomic<std::int64_t> next{0};
  auto worker = [&](int thread) {
    std::int64_t item = next.fetch_add(1);
    while (item < items) {
      // Claim ahead only while every other thread still finds work after this claim.
      std::int64_t ahead = -1;
      if (next.load(std::memory_order_relaxed) + n <= items) {
        ahead = next.fetch_add(1);
        if (ahead >= items) ahead = -1;
      }
      body(item, ahead, thread);
      item = ahead >= 0 ? ahead : next.fetch_add(1);
    }
  };
  run_workers(n, worker);
}

}  // namespace hyperattn::cpu
