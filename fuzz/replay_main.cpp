// fuzz/replay_main.cpp: runs a harness over files and folders without libFuzzer (any compiler), so
// that the seed corpus and every kept crash input (fuzz/regressions/<name>/) are tests in the
// ordinary build: `fuzz_<name>_replay fuzz/corpus/<name> fuzz/regressions/<name>`.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  std::size_t inputs = 0;
  auto run = [&](const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    const std::vector<char> bytes{std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
    LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
    ++inputs;
  };
  for (int i = 1; i < argc; ++i) {
    const fs::path arg(argv[i]);
    if (fs::is_directory(arg)) {
      std::vector<fs::path> files;
      for (const auto& e : fs::recursive_directory_iterator(arg))
        if (e.is_regular_file()) files.push_back(e.path());
      std::sort(files.begin(), files.end());
      for (const auto& p : files) run(p);
    } else if (fs::exists(arg)) {
      run(arg);
    }
  }
  std::printf("%zu inputs replayed without a crash\n", inputs);
  return inputs > 0 ? 0 : 1;
}
