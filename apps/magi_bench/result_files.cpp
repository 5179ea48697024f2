#include "result_files.h"

#include "system_info.h"

#include "core/base/error.h"
#include "core/base/file_io.h"
#include "core/results/writers.h"

#include <fmt/format.h>

namespace magi::app {

void ResultFiles::check_before_work() const {
  if (!json.empty() && !csv.empty() && same_file(json, csv)) {
    throw UsageError(fmt::format("--out {} and --csv {}: the same file; expected two different files", json, csv));
  }
  const Overwrite overwrite = force ? Overwrite::allow : Overwrite::refuse;
  if (!json.empty()) check_writable(json, overwrite);
  if (!csv.empty()) check_writable(csv, overwrite);
}

std::vector<std::string> ResultFiles::write(Report& report) const {
  stamp_end_time(report.metadata);
  std::vector<FileContent> files;
  if (!json.empty()) files.push_back({json, to_json_text(report)});
  if (!csv.empty()) files.push_back({csv, to_csv(report)});
  write_files_atomic(files, force ? Overwrite::allow : Overwrite::refuse);
  std::vector<std::string> written;
  for (const FileContent& f : files) written.push_back(f.path);
  return written;
}

}  // namespace magi::app
