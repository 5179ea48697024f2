// Result files are written whole or not at all: write a temporary file beside the target,
// then rename it over. An existing file is never silently overwritten.
#pragma once

#include <cstddef>
#include <limits>
#include <string>
#include <vector>

namespace magi {

enum class Overwrite { refuse, allow };

struct FileContent {
  std::string path;
  std::string content;
};

// Writes every file or none: all are written to temporary files first, and only when all of
// them are whole do they take their names (a failure removes what this call created). Throws
// FileError naming the path when a target exists (and overwrite is refused) or cannot be written.
void write_files_atomic(const std::vector<FileContent>& files, Overwrite overwrite = Overwrite::refuse);
void write_file_atomic(const std::string& path, const std::string& content,
                       Overwrite overwrite = Overwrite::refuse);

// Throws FileError when `path` exists and overwrite is refused, or when its directory is missing
// or refuses a new file (tried by creating and removing one): call before a long run so that the
// user learns of the problem before the work, not after it.
void check_writable(const std::string& path, Overwrite overwrite = Overwrite::refuse);

// Whether two paths name the same file, existing or not ("r.json" and "./r.json" do).
bool same_file(const std::string& a, const std::string& b);

// Whole file as a string; throws FileError naming the path when it cannot be read (missing,
// a directory, a read error) or holds more than max_bytes (so /dev/zero cannot exhaust memory).
std::string read_file(const std::string& path,
                      size_t max_bytes = std::numeric_limits<size_t>::max());

}  // namespace magi
