// Helpers shared by the workload tests: scratch files and the shipped configs.
#pragma once

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

namespace magi::testing {

// A per-process scratch directory, created on first use and removed at exit.
inline const std::filesystem::path& scratch_dir() {
  struct Dir {
    std::filesystem::path path = std::filesystem::temp_directory_path() /
                                 ("magi_workload_test_" + std::to_string(::getpid()));
    Dir() { std::filesystem::create_directories(path); }
    ~Dir() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  };
  static const Dir dir;
  return dir.path;
}

// Writes `text` to scratch_dir()/name and returns the path.
inline std::string write_scratch(const std::string& name, const std::string& text) {
  const auto path = scratch_dir() / name;
  std::ofstream(path, std::ios::binary) << text;
  return path.string();
}

// The shipped workloads, configs/*.json and those under its folders (configs/ci/), sorted;
// configs/clusters/ holds cluster descriptions (docs/simulation.md), not workloads.
inline std::vector<std::filesystem::path> shipped_configs() {
  std::vector<std::filesystem::path> files;
  const std::filesystem::path clusters = std::filesystem::path(MAGI_CONFIGS_DIR) / "clusters";
  for (auto it = std::filesystem::recursive_directory_iterator(MAGI_CONFIGS_DIR);
       it != std::filesystem::recursive_directory_iterator(); ++it) {
    if (it->is_directory() && it->path() == clusters) {
      it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file() && it->path().extension() == ".json") files.push_back(it->path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace magi::testing
