// Result files are written whole or not at all: write a temporary file beside the target,
// then rename it over. An existing file is never silently overwritten.
#pragma once

#include <cstddef>
#include <limits>
#include <string>

namespace magi {

enum class Overwrite { refuse, allow };

// Throws FileError when the target exists (and overwrite is refused) or cannot be written.
void write_file_atomic(const std::string& path, const std::string& content,
                       Overwrite overwrite = Overwrite::refuse);

// Throws FileError when `path` exists and overwrite is refused: call before a long run so that
// the user learns of the clash before the work, not after it.
void check_writable(const std::string& path, Overwrite overwrite = Overwrite::refuse);

// Whole file as a string; throws FileError naming the path when it cannot be read (missing,
// a directory, a read error) or holds more than max_bytes (so /dev/zero cannot exhaust memory).
std::string read_file(const std::string& path,
                      size_t max_bytes = std::numeric_limits<size_t>::max());

}  // namespace magi
