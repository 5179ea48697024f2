// The result files of a measuring command (`run`, `kernel`): --out (JSON) and --csv, checked
// before any work and written both or neither at the end (docs/results_schema.md).
#pragma once

#include "core/results/row.h"

#include <string>
#include <vector>

namespace magi::app {

struct ResultFiles {
  std::string json;  // "" = none
  std::string csv;   // "" = none
  bool force = false;

  // UsageError when both name one file; FileError when either cannot be written (or exists and
  // force is off). Call before any work.
  void check_before_work() const;
  // Stamps the end time into the report's metadata and writes the files (temp files, then
  // renames); returns the paths written.
  std::vector<std::string> write(Report& report) const;
};

}  // namespace magi::app
