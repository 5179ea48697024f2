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

namespace {

std::string temp_name(const std::string& path) {
  return fmt::format("{}.tmp.{}", path, static_cast<long>(::getpid()));
}

// Creates `tmp` holding `content`; throws FileError naming `path` (the user's name) otherwise.
void write_temp(const std::string& path, const std::string& tmp, const std::string& content) {
  std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
  if (!out) {
    throw FileError(fmt::format("{}: cannot create a file in its directory ({})", path, std::strerror(errno)));
  }
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  out.flush();
  if (!out) {
    const int err = errno;
    out.close();
    std::remove(tmp.c_str());
    throw FileError(fmt::format("{}: write failed ({})", path, std::strerror(err)));
  }
}

// Gives the whole temporary file its name: link() when overwriting is refused (it fails when the
// target exists, so a file created meanwhile is not clobbered), rename() otherwise.
void place(const std::string& tmp, const std::string& path, Overwrite overwrite) {
  if (overwrite == Overwrite::refuse) {
    if (::link(tmp.c_str(), path.c_str()) != 0) {
      throw FileError(fmt::format("{}: cannot create ({})", path, std::strerror(errno)));
    }
    std::remove(tmp.c_str());
  } else if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    throw FileError(fmt::format("{}: cannot replace ({})", path, std::strerror(errno)));
  }
}

// The checks that need no file: the target's existence and its directory.
void check_target(const std::string& path, Overwrite overwrite) {
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

}  // namespace

void check_writable(const std::string& path, Overwrite overwrite) {
  check_target(path, overwrite);
  const std::string probe = temp_name(path);
  write_temp(path, probe, "");
  std::remove(probe.c_str());
}

bool same_file(const std::string& a, const std::string& b) {
  std::error_code ec_a, ec_b;
  const fs::path ca = fs::weakly_canonical(fs::absolute(a, ec_a), ec_a);
  const fs::path cb = fs::weakly_canonical(fs::absolute(b, ec_b), ec_b);
  if (ec_a || ec_b) return a == b;
  return ca.lexically_normal() == cb.lexically_normal();
}

void write_files_atomic(const std::vector<FileContent>& files, Overwrite overwrite) {
  for (size_t i = 0; i < files.size(); ++i) {
    check_target(files[i].path, overwrite);  // a directory refusing files fails at its temp file
    for (size_t j = 0; j < i; ++j) {
      if (same_file(files[i].path, files[j].path)) {
        throw FileError(fmt::format("{}: written twice by one command (also as {})", files[i].path, files[j].path));
      }
    }
  }
  std::vector<std::string> temps;
  size_t placed = 0;
  try {
    for (const FileContent& f : files) {
      temps.push_back(temp_name(f.path));
      write_temp(f.path, temps.back(), f.content);
    }
    for (; placed < files.size(); ++placed) place(temps[placed], files[placed].path, overwrite);
  } catch (...) {
    for (size_t i = placed; i < temps.size(); ++i) std::remove(temps[i].c_str());
    // Files this call already placed go too: all or nothing (with --force an overwritten file
    // stays replaced).
    if (overwrite == Overwrite::refuse) {
      for (size_t i = 0; i < placed; ++i) std::remove(files[i].path.c_str());
    }
    throw;
  }
}

void write_file_atomic(const std::string& path, const std::string& content, Overwrite overwrite) {
  write_files_atomic({FileContent{path, content}}, overwrite);
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
