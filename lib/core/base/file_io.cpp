#include "core/base/file_io.h"

#include "core/base/error.h"

#include <array>
#include <atomic>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace magi {

namespace fs = std::filesystem;

namespace {

// The registry behind ScopedTempFile. Fixed storage and lock-free atomics only, so that the
// signal handler may read it (async-signal-safe: unlink, sigaction and raise, nothing that
// allocates or locks). One command writes at most a few files at a time.
struct TempSlot {
  std::atomic<bool> used{false};
  char path[PATH_MAX] = {};
};
std::array<TempSlot, 8> g_temp_slots;
int g_temps_registered = 0;  // changed by the thread that writes results only
constexpr std::array<int, 3> kCleanupSignals{SIGINT, SIGTERM, SIGHUP};
std::array<struct sigaction, kCleanupSignals.size()> g_previous_actions;

extern "C" void remove_temps_and_reraise(int sig) {
  for (TempSlot& slot : g_temp_slots) {
    if (slot.used.load(std::memory_order_acquire)) ::unlink(slot.path);
  }
  for (size_t i = 0; i < kCleanupSignals.size(); ++i) {
    if (kCleanupSignals[i] == sig) ::sigaction(sig, &g_previous_actions[i], nullptr);
  }
  ::raise(sig);  // delivered when this handler returns, with the previous disposition
}

void install_cleanup_handlers() {
  struct sigaction action {};
  action.sa_handler = remove_temps_and_reraise;
  sigemptyset(&action.sa_mask);
  for (size_t i = 0; i < kCleanupSignals.size(); ++i) {
    ::sigaction(kCleanupSignals[i], &action, &g_previous_actions[i]);
  }
}

void restore_previous_handlers() {
  for (size_t i = 0; i < kCleanupSignals.size(); ++i) {
    ::sigaction(kCleanupSignals[i], &g_previous_actions[i], nullptr);
  }
}

std::string temp_name(const std::string& path) {
  return fmt::format("{}.tmp.{}", path, static_cast<long>(::getpid()));
}

// What an existing non-regular file is, for messages.
std::string file_kind(const std::string& path, mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISLNK(mode)) {
    std::error_code ec;
    const fs::path target = fs::read_symlink(path, ec);
    return ec ? "a symbolic link" : fmt::format("a symbolic link to {}", target.string());
  }
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
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
    throw FileError(fmt::format("{}: write failed ({})", path, std::strerror(err)));
  }
}

// Gives the whole temporary file its name: link() when overwriting is refused (it fails when the
// target exists, so a file created meanwhile is not clobbered; the temporary name is removed
// with its ScopedTempFile), rename() otherwise.
void place(ScopedTempFile& tmp, const std::string& path, Overwrite overwrite) {
  if (overwrite == Overwrite::refuse) {
    if (::link(tmp.path().c_str(), path.c_str()) != 0) {
      throw FileError(fmt::format("{}: cannot create ({})", path, std::strerror(errno)));
    }
  } else {
    if (std::rename(tmp.path().c_str(), path.c_str()) != 0) {
      throw FileError(fmt::format("{}: cannot replace ({})", path, std::strerror(errno)));
    }
    tmp.release();
  }
}

// The checks that need no file: what exists at the target, and its directory. A symbolic link
// is refused rather than written through: rename() would replace the link itself, and following
// it would write where the command line does not say.
void check_target(const std::string& path, Overwrite overwrite) {
  if (path.empty()) throw FileError("an empty file name; expected a path");
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISREG(st.st_mode)) {
      throw FileError(fmt::format("{}: exists and is {}, not a regular file; refusing to replace "
                                  "it (--force replaces regular files only)",
                                  path, file_kind(path, st.st_mode)));
    }
    if (overwrite == Overwrite::refuse) {
      throw FileError(fmt::format("{}: refusing to overwrite an existing file (remove it, choose "
                                  "another name, or pass --force)", path));
    }
  }
  std::error_code ec;
  const fs::path parent = fs::path(path).parent_path();
  if (!parent.empty() && !fs::is_directory(parent, ec)) {
    throw FileError(fmt::format("{}: directory {} does not exist", path, parent.string()));
  }
}

}  // namespace

ScopedTempFile::ScopedTempFile(std::string path) : path_(std::move(path)) {
  if (path_.size() >= PATH_MAX) throw FileError(fmt::format("{}: path too long", path_));
  for (size_t i = 0; i < g_temp_slots.size(); ++i) {
    TempSlot& slot = g_temp_slots[i];
    if (slot.used.load(std::memory_order_relaxed)) continue;
    std::memcpy(slot.path, path_.c_str(), path_.size() + 1);
    if (g_temps_registered++ == 0) install_cleanup_handlers();
    slot.used.store(true, std::memory_order_release);
    slot_ = static_cast<int>(i);
    return;
  }
  throw InternalError(fmt::format("more than {} temporary files at once", g_temp_slots.size()));
}

void ScopedTempFile::release() {
  if (slot_ < 0) return;
  g_temp_slots[slot_].used.store(false, std::memory_order_release);
  if (--g_temps_registered == 0) restore_previous_handlers();
  slot_ = -1;
}

ScopedTempFile::~ScopedTempFile() {
  if (slot_ < 0) return;
  ::unlink(path_.c_str());
  release();
}

void check_writable(const std::string& path, Overwrite overwrite) {
  check_target(path, overwrite);
  ScopedTempFile probe(temp_name(path));
  write_temp(path, probe.path(), "");
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
  std::vector<std::unique_ptr<ScopedTempFile>> temps;  // removed on every way out
  size_t placed = 0;
  try {
    for (const FileContent& f : files) {
      temps.push_back(std::make_unique<ScopedTempFile>(temp_name(f.path)));
      write_temp(f.path, temps.back()->path(), f.content);
    }
    for (; placed < files.size(); ++placed) place(*temps[placed], files[placed].path, overwrite);
  } catch (...) {
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
  // O_NONBLOCK: opening a FIFO must not wait for a writer before it can be refused.
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) throw FileError(fmt::format("{}: cannot read: {}", path, std::strerror(errno)));
  const std::unique_ptr<const int, void (*)(const int*)> closer(&fd, [](const int* f) { ::close(*f); });
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw FileError(fmt::format("{}: cannot read: {}", path, std::strerror(errno)));
  if (S_ISDIR(st.st_mode)) throw FileError(fmt::format("{}: cannot read: it is a directory", path));
  if (!S_ISREG(st.st_mode)) {
    throw FileError(fmt::format("{}: cannot read: it is {}; expected a regular file", path,
                                file_kind(path, st.st_mode)));
  }
  std::string text;
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw FileError(fmt::format("{}: cannot read: {}", path, std::strerror(errno)));
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > max_bytes) {
      throw FileError(fmt::format("{}: cannot read: larger than {} bytes", path, max_bytes));
    }
  }
  return text;
}

}  // namespace magi
