// tools/commands.hpp: the subcommands of the `hyperattn` tool, one file each.
// Each add_*_command registers its subcommand (flags and help) on `app` and returns the function
// that runs it once the command line is parsed; that function returns the process exit code
// (0 success, 1 a runtime failure, 2 bad input) and prints errors to stderr itself.
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

namespace hyperattn::cli {

struct Command {
  CLI::App* app = nullptr;
  std::function<int()> run;
};

Command add_run_command(CLI::App& app);
Command add_bench_command(CLI::App& app);
Command add_eval_command(CLI::App& app);
Command add_diagnose_command(CLI::App& app);

}  // namespace hyperattn::cli
