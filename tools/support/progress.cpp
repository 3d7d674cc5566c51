// tools/support/progress.cpp: see progress.hpp.
#include "support/progress.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

namespace hyperattn::tools {
namespace {

constexpr auto kBarInterval = std::chrono::milliseconds(100);  // 10 Hz on a terminal
constexpr auto kLinesInterval = std::chrono::seconds(2);       // logs
constexpr int kBarWidth = 30;

// mm:ss, or h:mm:ss from an hour on.
std::string clock_text(double seconds) {
  const auto s = static_cast<std::int64_t>(std::max(0.0, seconds) + 0.5);
  if (s >= 3600) return fmt::format("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60);
  return fmt::format("{:02}:{:02}", s / 60, s % 60);
}

}  // namespace

ProgressStyle default_progress_style() {
  return ::isatty(::fileno(stderr)) ? ProgressStyle::bar : ProgressStyle::lines;
}

ProgressBar::ProgressBar(std::string label, std::int64_t total, ProgressStyle style, std::FILE* stream)
    : label_(std::move(label)),
      total_(total),
      style_(stream == nullptr ? ProgressStyle::off : style),
      stream_(stream),
      start_(Clock::now()),
      // A terminal shows the bar at the first update; a log waits for the first interval.
      last_print_(style == ProgressStyle::bar ? start_ - kBarInterval : start_),
      quiet_period_(stream == stderr ? std::chrono::duration_cast<Clock::duration>(std::chrono::seconds(1)) : Clock::duration::zero()) {}

ProgressBar::~ProgressBar() {
  bool pending;
  {
    const std::lock_guard lock(mutex_);
    pending = (printed_ || last_line_due_) && !finished_;
  }
  if (pending) finish();
}

void ProgressBar::advance(std::int64_t n) {
  const std::lock_guard lock(mutex_);
  done_ += n;
  update_locked(false);
}

void ProgressBar::set(std::int64_t done) {
  const std::lock_guard lock(mutex_);
  done_ = done;
  update_locked(false);
}

void ProgressBar::set_total(std::int64_t total) {
  const std::lock_guard lock(mutex_);
  total_ = total;
}

void ProgressBar::finish() {
  const std::lock_guard lock(mutex_);
  if (finished_) return;
  update_locked(true);
  finished_ = true;
}

std::string ProgressBar::line() const {
  const std::lock_guard lock(mutex_);
  return line_locked(Clock::now(), finished_);
}

std::string ProgressBar::line_locked(Clock::time_point now, bool at_end) const {
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  std::string text = label_;
  if (total_ > 0) {
    const std::int64_t shown = std::clamp<std::int64_t>(done_, 0, total_);
    const double fraction = static_cast<double>(shown) / static_cast<double>(total_);
    const int filled = static_cast<int>(fraction * kBarWidth);
    text += fmt::format(" [{}{}] {:3}% {}/{}", std::string(static_cast<std::size_t>(filled), '#'),
                        std::string(static_cast<std::size_t>(kBarWidth - filled), '.'),
                        static_cast<int>(fraction * 100.0), done_, total_);
    if (at_end || done_ >= total_) {
      text += " in " + clock_text(elapsed);
    } else if (shown > 0) {
      text += " eta " + clock_text(elapsed * static_cast<double>(total_ - shown) / static_cast<double>(shown));
    } else {
      text += " eta --:--";
    }
  } else {
    text += fmt::format(" {} done in {}", done_, clock_text(elapsed));
  }
  return text;
}

void ProgressBar::update_locked(bool force) {
  if (style_ == ProgressStyle::off || finished_) return;
  const Clock::time_point now = Clock::now();
  const auto interval = style_ == ProgressStyle::bar ? std::chrono::duration_cast<Clock::duration>(kBarInterval)
                                                     : std::chrono::duration_cast<Clock::duration>(kLinesInterval);
  if (!force && now - last_print_ < interval) return;
  // A log's line for the last step is finish()'s, with the true end time: printed here too, it
  // would show 100% twice.
  if (!printed_ && now - start_ < quiet_period_) return;
  if (!force && style_ == ProgressStyle::lines && total_ > 0 && done_ >= total_) {
    last_line_due_ = true;  // the destructor prints it if finish() is never called
    return;
  }
  last_print_ = now;
  const std::string text = line_locked(now, force);
  if (style_ == ProgressStyle::bar) {
    // Pad to the previous width so a shorter line fully overwrites a longer one.
    const std::size_t pad = last_width_ > text.size() ? last_width_ - text.size() : 0;
    fmt::print(stream_, "\r{}{}{}", text, std::string(pad, ' '), force ? "\n" : "");
    last_width_ = text.size();
  } else {
    fmt::print(stream_, "{}\n", text);
  }
  std::fflush(stream_);
  printed_ = true;
}

void progress_callback(void* context, std::int64_t done, std::int64_t total) {
  auto* bar = static_cast<ProgressBar*>(context);
  if (bar == nullptr) return;
  bar->set_total(total);
  bar->set(done);
}

}  // namespace hyperattn::tools
