#include "core/base/file_io.h"

#include "core/base/error.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

#include <unistd.h>

namespace magi {

namespace fs = std::filesystem;

void check_writable(const std::string& path, Overwrite overwrite) {
  std::error_code ec;
  if (overwrite == Overwrite::refuse && fs::exists(path, ec)) {
    throw FileError(fmt::format("{}: refusing to overwrite an existing file (remove it, choose "
                                "another name, or pass --force)", path));
  }
  const fs::path parent = fs::path(path).parent_path();
  if (!parent.empty() && !fs::is_directory(parent, ec)) {
    throw FileError(fmt::format("{}: directory {} does not exist", path, parent.string()));
  }
}

void write_file_atomic(const std::string& path, const std::string& content, Overwrite overwrite) {
  check_writable(path, overwrite);
  const std::string tmp = fmt::format("{}.tmp.{}", path, static_cast<long>(::getpid()));
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw FileError(fmt::format("{}: cannot create ({})", tmp, std::strerror(errno)));
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      throw FileError(fmt::format("{}: write failed ({})", tmp, std::strerror(errno)));
    }
  }
  if (overwrite == Overwrite::refuse) {
    // link() fails when the target exists, so a file created meanwhile is not clobbered.
    if (::link(tmp.c_str(), path.c_str()) != 0) {
      const int err = errno;
      std::remove(tmp.c_str());
      throw FileError(fmt::format("{}: cannot create ({})", path, std::strerror(err)));
    }
    std::remove(tmp.c_str());
  } else if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    throw FileError(fmt::format("{}: cannot replace ({})", path, std::strerror(err)));
  }
}

std::string read_file(const std::string& path, size_t max_bytes) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw FileError(fmt::format("{}: cannot read: it is a directory", path));
  const std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), std::fclose);
  if (!f) throw FileError(fmt::format("{}: cannot read: {}", path, std::strerror(errno)));
  std::string text;
  char buf[1 << 16];
  for (;;) {
    const size_t n = std::fread(buf, 1, sizeof buf, f.get());
    text.append(buf, n);
    if (text.size() > max_bytes) {
      throw FileError(fmt::format("{}: cannot read: larger than {} bytes", path, max_bytes));
    }
    if (n < sizeof buf) break;
  }
  if (std::ferror(f.get())) throw FileError(fmt::format("{}: cannot read: {}", path, std::strerror(errno)));
  return text;
}

}  // namespace magi
