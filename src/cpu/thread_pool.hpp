// src/cpu/thread_pool.hpp: a parallel loop over independent work items.
// Workers take item indices from an atomic counter (ggml's scheme), so cheap and expensive items
// balance themselves; each item must write disjoint memory, which makes results independent of
// the thread count and of the order in which items run.
#pragma once

#include <cstdint>
#include <functional>

namespace hyperattn::cpu {

// Number of threads to use for `requested` (0 = every hardware thread).
int resolve_threads(int requested);

// Runs body(item, thread) for item in [0, items) on `threads` threads (the caller is thread 0).
// `thread` is in [0, threads): use it to pick per-thread scratch.
void parallel_for(std::int64_t items, int threads,
                  const std::function<void(std::int64_t item, int thread)>& body);

// The same loop, each worker claiming its next item before it runs the current one, so the body
// can prepare for it (e.g. prefetch its memory): body(item, next, thread) with next = the item
// this thread runs after `item`, or -1. Claiming stops `threads` items before the end, so the
// tail still balances as in parallel_for.
void parallel_for_lookahead(std::int64_t items, int threads,
                            const std::function<void(std::int64_t item, std::int64_t next, int thread)>& body);

}  // namespace hyperattn::cpu
