// Result files are written whole or not at all: write a temporary file beside the target,
// then rename it over. An existing file is never silently overwritten, and what is not a
// regular file (a directory, a symbolic link, a FIFO, a device) is never replaced.
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
// FileError naming the path when a target exists (and overwrite is refused), is not a regular
// file (even with overwrite allowed), or cannot be written.
void write_files_atomic(const std::vector<FileContent>& files, Overwrite overwrite = Overwrite::refuse);
void write_file_atomic(const std::string& path, const std::string& content,
                       Overwrite overwrite = Overwrite::refuse);

// Throws FileError when `path` exists and overwrite is refused, when it exists and is not a
// regular file, or when its directory is missing or refuses a new file (tried by creating and
// removing one): call before a long run so that the user learns of the problem before the
// work, not after it.
void check_writable(const std::string& path, Overwrite overwrite = Overwrite::refuse);

// Whether two paths name the same file, existing or not ("r.json" and "./r.json" do).
bool same_file(const std::string& a, const std::string& b);

// Whole file as a string; throws FileError naming the path when it cannot be read (missing,
// not a regular file, a read error) or holds more than max_bytes. A FIFO or a device is refused
// without being read, so that it can neither block the reader nor exhaust memory.
std::string read_file(const std::string& path,
                      size_t max_bytes = std::numeric_limits<size_t>::max());

// A temporary file that is removed when this object dies or when the process is ended by
// SIGINT, SIGTERM or SIGHUP while it exists (Ctrl-C to mpirun, which passes a SIGTERM on to the
// ranks): the handler, installed while at least one is registered, unlinks every registered
// path and then lets the signal take its previous course. SIGKILL cannot be caught; temporary
// files exist only while the results are being written, at the end of a run.
class ScopedTempFile {
 public:
  explicit ScopedTempFile(std::string path);  // registers; the file need not exist yet
  ~ScopedTempFile();                          // removes the file unless released
  ScopedTempFile(const ScopedTempFile&) = delete;
  ScopedTempFile& operator=(const ScopedTempFile&) = delete;

  const std::string& path() const { return path_; }
  // The file took its final name: nothing to remove any more.
  void release();

 private:
  std::string path_;
  int slot_ = -1;
};

}  // namespace magi
