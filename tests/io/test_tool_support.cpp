// tests/io/test_tool_support.cpp: the CLI's plotting (gnuplot) and progress bar (tools/support).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "io/io_test_util.hpp"
#include "support/plot.hpp"
#include "support/progress.hpp"

namespace hyperattn::tools {
namespace {

using hyperattn::testing::ScratchDirTest;

bool gnuplot_available() { return std::system("gnuplot --version > /dev/null 2>&1") == 0; }

PlotSpec example_spec(const std::string& output) {
  PlotSpec spec;
  spec.title = "time vs seq_kv (it's \"quoted\")";
  spec.xlabel = "seq_kv";
  spec.ylabel = "ms";
  spec.logx = true;
  spec.logy = true;
  spec.output_png = output;
  Series exact{.label = "exact", .x = {1024, 2048, 4096, 8192}, .y = {1, 4, 16, 64}};
  Series hyper{.label = "hyper 'r=7'", .x = {1024, 2048, 4096, 8192}, .y = {2, 4, 8, 16}, .style = SeriesStyle::points};
  spec.series = {exact, hyper};
  return spec;
}

class PlotTest : public ScratchDirTest {};

TEST_F(PlotTest, WritesAPng) {
  if (!gnuplot_available()) GTEST_SKIP() << "gnuplot is not installed";
  const std::string out = path("plot.png");
  const Status s = plot_png(example_spec(out));
  ASSERT_TRUE(s.ok()) << s.message();
  const std::string png = read_bytes(out);
  ASSERT_GT(png.size(), 1000u);
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  // IHDR holds the width and height, big-endian, at bytes 16..23.
  auto be32 = [&](std::size_t at) {
    return (static_cast<unsigned char>(png[at]) << 24) | (static_cast<unsigned char>(png[at + 1]) << 16) |
           (static_cast<unsigned char>(png[at + 2]) << 8) | static_cast<unsigned char>(png[at + 3]);
  };
  EXPECT_EQ(be32(16), 900);
  EXPECT_EQ(be32(20), 600);
}

TEST_F(PlotTest, ScriptEscapesQuotesAndMarksGaps) {
  PlotSpec spec = example_spec(path("it's.png"));
  spec.series[0].y[1] = std::nan("");
  std::string script;
  ASSERT_TRUE(gnuplot_script(spec, &script).ok());
  EXPECT_NE(script.find("set title 'time vs seq_kv (it''s \"quoted\")'"), std::string::npos) << script;
  EXPECT_NE(script.find("it''s.png'"), std::string::npos) << script;
  EXPECT_NE(script.find("title 'hyper ''r=7'''"), std::string::npos) << script;
  EXPECT_NE(script.find("with points"), std::string::npos) << script;
  EXPECT_NE(script.find("with linespoints"), std::string::npos) << script;
  EXPECT_NE(script.find("2048 NaN"), std::string::npos) << script;
  EXPECT_NE(script.find("noenhanced"), std::string::npos) << script;
}

TEST_F(PlotTest, RejectsInconsistentSpecs) {
  PlotSpec spec = example_spec(path("p.png"));
  spec.series[1].y.pop_back();
  Status s = plot_png(spec);
  EXPECT_EQ(s.code(), StatusCode::invalid_argument);
  EXPECT_NE(s.message().find("has 4 x values but 3 y values"), std::string::npos) << s.message();

  spec = example_spec(path("p.png"));
  spec.series[0].y[0] = 0.0;
  s = plot_png(spec);
  EXPECT_EQ(s.code(), StatusCode::invalid_argument);
  EXPECT_NE(s.message().find("logarithmic"), std::string::npos) << s.message();

  spec = example_spec(path("p.png"));
  spec.series.clear();
  EXPECT_EQ(plot_png(spec).code(), StatusCode::invalid_argument);
  spec = example_spec("");
  EXPECT_EQ(plot_png(spec).code(), StatusCode::invalid_argument);
}

TEST_F(PlotTest, ReportsMissingGnuplot) {
  // qemu-user (the aarch64 cross build's tests, cmake/toolchain-aarch64.cmake) runs the vfork child
  // of glibc's posix_spawn as a plain fork, so a failed exec comes back as exit status 127 instead of
  // ENOENT from posix_spawnp; on real hardware the error is reported as here.
  if (std::getenv("HYPERATTN_TEST_EMULATOR") != nullptr) GTEST_SKIP() << "posix_spawn cannot report ENOENT under qemu-user";
  ::setenv("HYPERATTN_GNUPLOT", "hyperattn-no-such-gnuplot", 1);
  const Status s = plot_png(example_spec(path("p.png")));
  ::unsetenv("HYPERATTN_GNUPLOT");
  EXPECT_EQ(s.code(), StatusCode::io_error);
  EXPECT_NE(s.message().find("--plot needs gnuplot (apt-get install gnuplot-nox)"), std::string::npos) << s.message();
}

TEST_F(PlotTest, ReportsGnuplotFailure) {
  if (!gnuplot_available()) GTEST_SKIP() << "gnuplot is not installed";
  const Status s = plot_png(example_spec(path("no_such_dir/p.png")));
  EXPECT_EQ(s.code(), StatusCode::io_error);
  EXPECT_NE(s.message().find("no_such_dir/p.png"), std::string::npos) << s.message();
  // Our words, not gnuplot's (issue 15): no script line, caret or gnuplot diagnostic.
  EXPECT_NE(s.message().find("cannot write the plot"), std::string::npos) << s.message();
  for (const char* gnuplot_text : {"set output", "line ", "^", "system error", ".gp"})
    EXPECT_EQ(s.message().find(gnuplot_text), std::string::npos) << gnuplot_text << " in: " << s.message();
}

// ---- progress ---------------------------------------------------------------------------------

class ProgressTest : public ScratchDirTest {
 protected:
  std::string run(ProgressStyle style, const std::function<void(ProgressBar&)>& body) {
    const std::string p = path("progress.txt");
    std::FILE* f = std::fopen(p.c_str(), "w");
    EXPECT_NE(f, nullptr);
    {
      ProgressBar bar("attention", 32, style, f);
      body(bar);
    }
    std::fclose(f);
    return read_bytes(p);
  }
};

TEST_F(ProgressTest, LinesModeIsQuietUntilTheFinalLine) {
  const std::string out = run(ProgressStyle::lines, [](ProgressBar& bar) {
    bar.set(3);
    bar.advance();
    bar.advance(8);
    EXPECT_EQ(bar.line().substr(0, 53), "attention [###########...................]  37% 12/32");
    EXPECT_NE(bar.line().find(" eta "), std::string::npos) << bar.line();
    bar.set(32);
    bar.finish();
    bar.finish();  // idempotent
  });
  // Updates within 2 s print nothing; finish prints exactly one line.
  EXPECT_EQ(out.rfind("attention [##############################] 100% 32/32 in 00:00\n", 0), 0u) << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  EXPECT_EQ(out.find('\r'), std::string::npos) << out;
}

TEST_F(ProgressTest, LinesModePrintsTheLastStepOnce) {
  const std::string out = run(ProgressStyle::lines, [](ProgressBar& bar) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2100));  // past the 2 s between log lines
    bar.set(32);  // due for a line, but the last step's line is finish()'s
    bar.finish();
  });
  EXPECT_EQ(out.rfind("attention [##############################] 100% 32/32 in 00:0", 0), 0u) << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  // Without finish(), the destructor prints that line.
  const std::string unfinished = run(ProgressStyle::lines, [](ProgressBar& bar) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2100));
    bar.set(32);
  });
  EXPECT_EQ(unfinished.rfind("attention [##############################] 100% 32/32 in 00:0", 0), 0u) << unfinished;
  EXPECT_EQ(std::count(unfinished.begin(), unfinished.end(), '\n'), 1) << unfinished;
}

TEST_F(ProgressTest, BarModeRedrawsInPlaceAndEndsWithNewline) {
  const std::string out = run(ProgressStyle::bar, [](ProgressBar& bar) {
    bar.set(16);
    for (int i = 0; i < 1000; ++i) bar.advance(0);  // throttled to 10 Hz: no redraws here
    bar.finish();
  });
  EXPECT_EQ(out.rfind("\rattention [###############...............]  50% 16/32 eta", 0), 0u) << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\r'), 2) << out;
  EXPECT_EQ(out.back(), '\n');
  EXPECT_NE(out.find("50% 16/32 in 00:00"), std::string::npos) << out;
}

TEST_F(ProgressTest, DestructorFinishesAndOffPrintsNothing) {
  std::string out = run(ProgressStyle::bar, [](ProgressBar& bar) { bar.set(1); });
  EXPECT_EQ(out.back(), '\n') << out;
  out = run(ProgressStyle::off, [](ProgressBar& bar) {
    bar.set(5);
    bar.finish();
  });
  EXPECT_TRUE(out.empty()) << out;
}

TEST_F(ProgressTest, CallbackFromManyThreadsIsSafe) {
  const std::string out = run(ProgressStyle::lines, [](ProgressBar& bar) {
    std::vector<std::thread> workers;
    for (int t = 0; t < 4; ++t) {
      workers.emplace_back([&bar, t] {
        for (int i = 0; i < 1000; ++i) progress_callback(&bar, t * 1000 + i, 4000);
      });
    }
    for (auto& w : workers) w.join();
    progress_callback(&bar, 4000, 4000);
    bar.finish();
  });
  EXPECT_NE(out.find("100% 4000/4000"), std::string::npos) << out;
}

TEST_F(ProgressTest, UnknownTotalShowsACount) {
  const std::string out = run(ProgressStyle::lines, [](ProgressBar& bar) {
    bar.set_total(0);
    bar.set(7);
    bar.finish();
  });
  EXPECT_EQ(out.rfind("attention 7 done in 00:00\n", 0), 0u) << out;
}

}  // namespace
}  // namespace hyperattn::tools
