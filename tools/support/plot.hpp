// tools/support/plot.hpp: line plots written as PNG by running gnuplot.
//
// plot_png writes a gnuplot script with the data inline (datablocks) to a temporary file, runs
// `gnuplot` on it, and checks the exit code and that a PNG came out. Labels are passed through
// verbatim: quotes are escaped and gnuplot's enhanced-text markup (^ _ @ { }) is switched off.
#pragma once

#include <string>
#include <vector>

#include "hyperattn/status.hpp"

namespace hyperattn::tools {

enum class SeriesStyle { lines_points, points, lines };

struct Series {
  std::string label;
  std::vector<double> x, y;  // same length; non-finite values leave a gap
  SeriesStyle style = SeriesStyle::lines_points;
};

struct PlotSpec {
  std::string title, xlabel, ylabel;
  bool logx = false, logy = false;  // log axes need positive values
  std::vector<Series> series;
  std::string output_png;
  int width = 900, height = 600;
};

// The gnuplot script for `spec` (data inline); exposed for tests and --dry-run style output.
Status gnuplot_script(const PlotSpec& spec, std::string* script);

// Renders `spec` to spec.output_png. Errors: an inconsistent spec (InvalidArgument), gnuplot
// missing or failing, or no PNG written (IoError in our words; HYPERATTN_GNUPLOT_LOG=1 appends
// gnuplot's own output).
Status plot_png(const PlotSpec& spec);

}  // namespace hyperattn::tools
