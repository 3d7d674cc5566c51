// tools/support/plot.cpp: see plot.hpp.
#include "support/plot.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

extern char** environ;

namespace hyperattn::tools {
namespace {

// A gnuplot single-quoted string: no escape processing except '' for a quote. Newlines would end
// the command, so they become spaces.
std::string quoted(const std::string& text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') {
      out += "''";
    } else if (c == '\n' || c == '\r') {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out + "'";
}

const char* style_name(SeriesStyle style) {
  switch (style) {
    case SeriesStyle::lines_points:
      return "linespoints";
    case SeriesStyle::points:
      return "points";
    case SeriesStyle::lines:
      return "lines";
  }
  return "linespoints";
}

std::string number(double v) { return std::isfinite(v) ? fmt::format("{:.17g}", v) : std::string("NaN"); }

Status validate(const PlotSpec& spec) {
  if (spec.output_png.empty()) return Status::InvalidArgument("plot: output_png is empty");
  if (spec.output_png.find_first_of("\n\r") != std::string::npos) {
    return Status::InvalidArgument("plot: output_png contains a newline");
  }
  if (spec.width < 64 || spec.width > 16384 || spec.height < 64 || spec.height > 16384) {
    return Status::InvalidArgument(fmt::format("plot: size {}x{} is outside 64..16384", spec.width, spec.height));
  }
  if (spec.series.empty()) return Status::InvalidArgument("plot '" + spec.title + "': no series to plot");
  std::size_t finite_points = 0;
  for (const Series& s : spec.series) {
    if (s.x.size() != s.y.size()) {
      return Status::InvalidArgument(fmt::format("plot '{}': series '{}' has {} x values but {} y values", spec.title,
                                                 s.label, s.x.size(), s.y.size()));
    }
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      if ((spec.logx && s.x[i] <= 0) || (spec.logy && s.y[i] <= 0)) {
        return Status::InvalidArgument(
            fmt::format("plot '{}': series '{}' point ({}, {}) is not positive, but the {} "
                        "axis is logarithmic",
                        spec.title, s.label, s.x[i], s.y[i], spec.logx && s.x[i] <= 0 ? "x" : "y"));
      }
      ++finite_points;
    }
  }
  if (finite_points == 0) return Status::InvalidArgument("plot '" + spec.title + "': no finite points to plot");
  return Status::Ok();
}

std::string read_text(const std::string& path, std::size_t limit) {
  std::ifstream in(path, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.size() > limit) text = "..." + text.substr(text.size() - limit);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

// gnuplot's output, only when HYPERATTN_GNUPLOT_LOG is set (and not "0").
std::string debug_log(const std::string& log) {
  const char* env = std::getenv("HYPERATTN_GNUPLOT_LOG");
  if (env == nullptr || *env == '\0' || std::string(env) == "0" || log.empty()) return {};
  return " (gnuplot said: " + log + ")";
}

// A temporary file name from mkstemps, created empty; removed by the destructor.
class TempFile {
 public:
  explicit TempFile(const char* suffix) {
    const char* dir = std::getenv("TMPDIR");
    std::string pattern =
        std::string(dir != nullptr && *dir != '\0' ? dir : "/tmp") + "/hyperattn-plot-XXXXXX" + suffix;
    const int fd = ::mkstemps(pattern.data(), static_cast<int>(std::strlen(suffix)));
    if (fd >= 0) {
      ::close(fd);
      path_ = pattern;
    }
  }
  ~TempFile() {
    if (!path_.empty()) std::remove(path_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace

Status gnuplot_script(const PlotSpec& spec, std::string* script) {
  HYPERATTN_RETURN_IF_ERROR(validate(spec));
  std::ostringstream s;
  // pngcairo draws antialiased; the libgd png terminal is the fallback on minimal builds.
  s << "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
    << fmt::format("  set terminal pngcairo size {},{} noenhanced font 'sans,10'\n", spec.width, spec.height)
    << "} else {\n"
    << fmt::format("  set terminal png size {},{} noenhanced\n", spec.width, spec.height) << "}\n";
  s << "set output " << quoted(spec.output_png) << "\n";
  s << "set datafile missing NaN\n";
  if (!spec.title.empty()) s << "set title " << quoted(spec.title) << "\n";
  if (!spec.xlabel.empty()) s << "set xlabel " << quoted(spec.xlabel) << "\n";
  if (!spec.ylabel.empty()) s << "set ylabel " << quoted(spec.ylabel) << "\n";
  if (spec.logx) s << "set logscale x 2\n";
  if (spec.logy) s << "set logscale y 10\n";
  s << "set grid\nset key top left box opaque\n";
  s << "set autoscale fix\n";
  s << "set offsets graph 0.02, graph 0.02, graph 0.04, graph 0.04\n";  // keep edge points off the border
  for (std::size_t i = 0; i < spec.series.size(); ++i) {
    const Series& series = spec.series[i];
    s << "$series" << i << " << EOD\n";
    for (std::size_t j = 0; j < series.x.size(); ++j) s << number(series.x[j]) << ' ' << number(series.y[j]) << '\n';
    s << "EOD\n";
  }
  s << "plot ";
  for (std::size_t i = 0; i < spec.series.size(); ++i) {
    const Series& series = spec.series[i];
    if (i > 0) s << ", \\\n     ";
    s << "$series" << i << " using 1:2 with " << style_name(series.style) << " linewidth 2 pointsize 1.2 title "
      << quoted(series.label);
  }
  s << "\nunset output\n";
  *script = s.str();
  return Status::Ok();
}

Status plot_png(const PlotSpec& spec) {
  std::string script;
  HYPERATTN_RETURN_IF_ERROR(gnuplot_script(spec, &script));

  TempFile script_file(".gp");
  TempFile log_file(".log");
  if (script_file.path().empty() || log_file.path().empty()) {
    return Status::IoError(std::string("plot: cannot create a temporary file: ") + std::strerror(errno));
  }
  {
    std::ofstream out(script_file.path(), std::ios::binary);
    out << script;
    if (!out.flush()) return Status::IoError("plot: cannot write " + script_file.path());
  }
  std::error_code ignored;
  std::filesystem::remove(spec.output_png, ignored);  // so that a stale PNG cannot pass the check below

  // gnuplot's stdout and stderr go to the log, quoted in any error.
  const char* program_env = std::getenv("HYPERATTN_GNUPLOT");
  const std::string program = program_env != nullptr && *program_env != '\0' ? program_env : "gnuplot";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_file.path().c_str(), O_WRONLY | O_TRUNC, 0);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  std::string arg0 = program;
  std::string arg1 = script_file.path();
  char* argv[] = {arg0.data(), arg1.data(), nullptr};
  pid_t pid = 0;
  const int spawn_error = ::posix_spawnp(&pid, program.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawn_error == ENOENT) {
    return Status::IoError("--plot needs gnuplot (apt-get install gnuplot-nox); '" + program + "' was not found");
  }
  if (spawn_error != 0) {
    return Status::IoError("plot: cannot run '" + program + "': " + std::strerror(spawn_error));
  }
  int wait_status = 0;
  while (::waitpid(pid, &wait_status, 0) < 0) {
    if (errno != EINTR) return Status::IoError(std::string("plot: waitpid failed: ") + std::strerror(errno));
  }
  const std::string log = read_text(log_file.path(), 2000);
  if (!WIFEXITED(wait_status) || WEXITSTATUS(wait_status) != 0) {
    const std::string how = WIFEXITED(wait_status) ? fmt::format("exited with status {}", WEXITSTATUS(wait_status))
                                                   : fmt::format("was killed by signal {}", WTERMSIG(wait_status));
    // gnuplot's own text (script line numbers, a caret under our temporary script) means nothing to
    // the user; say what failed in our words. HYPERATTN_GNUPLOT_LOG=1 appends it for debugging.
    return Status::IoError("cannot write the plot " + spec.output_png + ": gnuplot " + how +
                           "; expected a writable .png path" + debug_log(log));
  }
  std::ifstream png(spec.output_png, std::ios::binary);
  char signature[8] = {};
  if (!png.read(signature, 8) || std::memcmp(signature, "\x89PNG\r\n\x1a\n", 8) != 0) {
    return Status::IoError("cannot write the plot " + spec.output_png +
                           ": gnuplot exited normally but the file is missing or not a PNG" + debug_log(log));
  }
  return Status::Ok();
}

}  // namespace hyperattn::tools
