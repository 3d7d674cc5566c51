#include "cpu/thread_pool.hpp"

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

namespace hyperattn::cpu {

int resolve_threads(int requested) {
  if (requested > 0) return requested;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

void parallel_for(std::int64_t items, int threads,
                  const std::function<void(std::int64_t, int)>& body) {
  if (items <= 0) return;
  const int n = static_cast<int>(std::min<std::int64_t>(std::max(threads, 1), items));
  std::atomic<std::int64_t> next{0};
  auto worker = [&](int thread) {
    for (std::int64_t item = next.fetch_add(1); item < items; item = next.fetch_add(1)) body(item, thread);
  };
  if (n == 1) {
    worker(0);
    return;
  }
  std::vector<std::thread> pool;
  pool.reserve(n - 1);
  for (int t = 1; t < n; ++t) pool.emplace_back(worker, t);
  worker(0);
  for (std::thread& th : pool) th.join();
}

}  // namespace hyperattn::cpu
