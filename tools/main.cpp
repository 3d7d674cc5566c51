// tools/main.cpp: the `hyperattn` command-line tool.
#include <cstdio>
#include <exception>
#include <vector>

#include <CLI/CLI.hpp>

#include "commands.hpp"
#include "hyperattn/version.hpp"

int main(int argc, char** argv) {
  CLI::App app{"hyperattn: exact attention and HyperAttention (near-linear long-context attention) on the CPU"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::to_string(HYPERATTN_VERSION_MAJOR) + "." + std::to_string(HYPERATTN_VERSION_MINOR) +
                                        "." + std::to_string(HYPERATTN_VERSION_PATCH));
  std::vector<hyperattn::cli::Command> commands = {
      hyperattn::cli::add_run_command(app),
      hyperattn::cli::add_bench_command(app),
      hyperattn::cli::add_eval_command(app),
      hyperattn::cli::add_diagnose_command(app),
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);  // prints the help, the version or the error
    return code == 0 ? 0 : 2;      // bad command lines exit with 2, like every other bad input
  }
  try {
    for (const auto& c : commands)
      if (c.app != nullptr && c.app->parsed()) return c.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hyperattn: error: %s\n", e.what());
    return 1;
  }
  return 2;
}
