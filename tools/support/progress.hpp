// tools/support/progress.hpp: a progress bar on stderr for long CLI commands.
//
// On a terminal it redraws `label [#####.....] 37% 12/32 eta 00:14` in place (\r), at most
// 10 times a second; elsewhere (CI logs, files) it prints a plain line at most every 2 s, so logs
// show progress without flooding. finish() always prints the final state and a newline. Every
// method is thread-safe, so worker threads may report directly.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>

namespace hyperattn::tools {

enum class ProgressStyle {
  bar,    // redraw one line in place (a terminal)
  lines,  // a plain line at most every 2 s (logs)
  off,    // print nothing
};

// bar when stderr is a terminal, lines otherwise.
ProgressStyle default_progress_style();

class ProgressBar {
 public:
  // `total` <= 0 means unknown until set_total (or the library callback) provides it.
  explicit ProgressBar(std::string label, std::int64_t total, ProgressStyle style = default_progress_style(),
                       std::FILE* stream = stderr);
  ~ProgressBar();  // finishes if something was printed (or a log's last line is due) and finish() was not called
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  void advance(std::int64_t n = 1);
  void set(std::int64_t done);
  void set_total(std::int64_t total);
  void finish();  // idempotent

  // The line as it would be drawn now (no \r, no padding); for tests.
  std::string line() const;

 private:
  using Clock = std::chrono::steady_clock;
  void update_locked(bool force);
  std::string line_locked(Clock::time_point now, bool at_end) const;

  mutable std::mutex mutex_;
  std::string label_;
  std::int64_t total_;
  std::int64_t done_ = 0;
  ProgressStyle style_;
  std::FILE* stream_;
  Clock::time_point start_;
  Clock::time_point last_print_;
  // Work that ends within this period prints nothing (progress is for work of seconds or more).
  // One second on stderr; none on an injected stream (tests).
  Clock::duration quiet_period_;
  bool printed_ = false;
  bool last_line_due_ = false;  // lines style: the last step came after the quiet period, unprinted
  bool finished_ = false;
  std::size_t last_width_ = 0;
};

// Matches AttentionConfig::progress: forwards (done, total) to the ProgressBar* in `context`.
//   config.progress = hyperattn::tools::progress_callback; config.progress_context = &bar;
void progress_callback(void* context, std::int64_t done, std::int64_t total);

}  // namespace hyperattn::tools
