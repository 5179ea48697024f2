// Result and input files: written whole or not at all, never clobbered, read with a bound.
#include "core/base/error.h"
#include "core/base/file_io.h"

#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <fstream>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace magi {
namespace {

namespace fs = std::filesystem;

class FileIo : public ::testing::Test {
 protected:
  void SetUp() override {
    // One folder per test and process: ctest runs the tests of this suite side by side.
    dir_ = fs::temp_directory_path() / fmt::format("magi_fileio_{}_{}", ::testing::UnitTest::GetInstance()->current_test_info()->name(),
                                                   static_cast<long>(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(FileIo, WritesWholeAndRefusesToOverwrite) {
  const std::string path = (dir_ / "r.json").string();
  write_file_atomic(path, "first");
  EXPECT_EQ(read_file(path), "first");
  try {
    write_file_atomic(path, "second");
    FAIL() << "overwrote an existing file";
  } catch (const FileError& e) {
    EXPECT_NE(std::string(e.what()).find("refusing to overwrite"), std::string::npos);
    EXPECT_EQ(e.code(), ExitCode::file);
  }
  EXPECT_EQ(read_file(path), "first");
  write_file_atomic(path, "third", Overwrite::allow);
  EXPECT_EQ(read_file(path), "third");
  // No temporary file is left behind.
  int files = 0;
  for (const auto& entry : fs::directory_iterator(dir_)) files += entry.is_regular_file();
  EXPECT_EQ(files, 1);
}

TEST_F(FileIo, MissingDirectoryAndUnreadableFileAreClearErrors) {
  EXPECT_THROW(write_file_atomic((dir_ / "no" / "r.json").string(), "x"), FileError);
  EXPECT_THROW(read_file((dir_ / "absent.json").string()), FileError);
  EXPECT_THROW(read_file(dir_.string()), FileError);
}

// Several files are written together or not at all: when one cannot be written, none appears
// and no temporary file stays.
TEST_F(FileIo, SeveralFilesAllOrNothing) {
  const std::string a = (dir_ / "a.json").string(), b = (dir_ / "b.csv").string();
  write_files_atomic({{a, "A"}, {b, "B"}});
  EXPECT_EQ(read_file(a), "A");
  EXPECT_EQ(read_file(b), "B");
  const std::string c = (dir_ / "c.json").string();
  // b exists: refused before anything is written.
  EXPECT_THROW(write_files_atomic({{c, "C"}, {b, "B2"}}), FileError);
  EXPECT_FALSE(fs::exists(c));
  EXPECT_EQ(read_file(b), "B");
  // The second target's directory refuses files (procfs): the first is not left behind.
  EXPECT_THROW(write_files_atomic({{c, "C"}, {"/proc/self/magi_test.csv", "D"}}), FileError);
  EXPECT_FALSE(fs::exists(c));
  // One path twice, spelt differently (a bare name in the working directory, the case a
  // canonical form of the existing prefix alone misses).
  const fs::path cwd = fs::current_path();
  fs::current_path(dir_);
  EXPECT_THROW(write_files_atomic({{"d.json", "1"}, {"./d.json", "2"}}), FileError);
  fs::current_path(cwd);
  EXPECT_FALSE(fs::exists(dir_ / "d.json"));
  int files = 0;
  for (const auto& entry : fs::directory_iterator(dir_)) files += entry.is_regular_file();
  EXPECT_EQ(files, 2);
}

// check_writable finds, before any work, a directory that refuses new files and names the
// user's path (not a temporary one).
TEST_F(FileIo, CheckWritableTriesTheDirectory) {
  try {
    check_writable("/proc/self/magi_test.json");
    FAIL() << "procfs accepted a new file";
  } catch (const FileError& e) {
    EXPECT_NE(std::string(e.what()).find("/proc/self/magi_test.json: cannot create a file in its directory"),
              std::string::npos)
        << e.what();
  }
  check_writable((dir_ / "ok.json").string());
  EXPECT_FALSE(fs::exists(dir_ / "ok.json"));
  EXPECT_TRUE(fs::is_empty(dir_));
}

TEST_F(FileIo, SameFileComparesSpellings) {
  const fs::path cwd = fs::current_path();
  fs::current_path(dir_);
  EXPECT_TRUE(same_file("x.json", "./x.json"));
  EXPECT_TRUE(same_file((dir_ / "x.json").string(), "x.json"));
  EXPECT_TRUE(same_file((dir_ / "sub" / ".." / "x.json").string(), "x.json"));
  EXPECT_FALSE(same_file("x.json", "y.json"));
  fs::current_path(cwd);
}

// read_file is the one file reader (the workload loader uses it too): bounded, so an endless
// device or a huge file is an error naming the path instead of exhausting memory.
TEST_F(FileIo, ReadFileIsBoundedAndNamesThePath) {
  const std::string path = (dir_ / "big.json").string();
  write_file_atomic(path, std::string(100, 'x'));
  EXPECT_EQ(read_file(path, 100).size(), 100u);
  try {
    read_file(path, 99);
    FAIL() << "read past max_bytes";
  } catch (const FileError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("larger than 99 bytes"), std::string::npos) << e.what();
  }
  try {
    read_file("/dev/zero", size_t{1} << 20);
    FAIL() << "read a character device";
  } catch (const FileError& e) {
    EXPECT_NE(std::string(e.what()).find("/dev/zero: cannot read: it is a character device"), std::string::npos)
        << e.what();
  }
  try {
    read_file((dir_ / "absent.json").string());
    FAIL() << "read a missing file";
  } catch (const FileError& e) {
    EXPECT_NE(std::string(e.what()).find("absent.json: cannot read: No such file"), std::string::npos)
        << e.what();
  }
}

// An existing path that is not a regular file is never replaced, with or without --force: as
// root, `--out /dev/null --force` used to rename a temporary file over /dev/null, and a symlink
// (or a FIFO) given as an output was replaced by a regular file.
TEST_F(FileIo, NonRegularTargetsAreNeverReplaced) {
  const fs::path target = dir_ / "target.json";
  write_file_atomic(target.string(), "kept");
  const fs::path link = dir_ / "link.json", fifo = dir_ / "fifo.csv", sub = dir_ / "sub";
  fs::create_symlink(target, link);
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  fs::create_directory(sub);
  const std::vector<std::pair<fs::path, std::string>> cases{
      {link, "a symbolic link to " + target.string()}, {fifo, "a FIFO"}, {sub, "a directory"}};
  for (const auto& [path, kind] : cases) {
    for (Overwrite ow : {Overwrite::refuse, Overwrite::allow}) {
      for (bool check_first : {true, false}) {
        try {
          if (check_first) {
            check_writable(path.string(), ow);
          } else {
            write_files_atomic({{(dir_ / "other.json").string(), "x"}, {path.string(), "y"}}, ow);
          }
          FAIL() << path << " was accepted as an output";
        } catch (const FileError& e) {
          EXPECT_NE(std::string(e.what()).find(path.string() + ": exists and is " + kind + ", not a regular file"),
                    std::string::npos)
              << e.what();
        }
      }
    }
  }
  EXPECT_TRUE(fs::is_symlink(link));
  EXPECT_EQ(read_file(target.string()), "kept");
  EXPECT_TRUE(fs::is_fifo(fifo));
  EXPECT_TRUE(fs::is_directory(sub));
  EXPECT_FALSE(fs::exists(dir_ / "other.json"));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 4);  // target, link, fifo, sub: no temporary file
}

// A FIFO given as an input used to block forever in fopen (no writer ever comes).
TEST_F(FileIo, ReadFileRefusesAFifoWithoutBlocking) {
  const fs::path fifo = dir_ / "w.json";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  ::alarm(20);  // a blocking open ends the test (SIGALRM) instead of hanging the suite
  try {
    read_file(fifo.string());
    FAIL() << "read a FIFO";
  } catch (const FileError& e) {
    EXPECT_NE(std::string(e.what()).find(fifo.string() + ": cannot read: it is a FIFO; expected a regular file"),
              std::string::npos)
        << e.what();
  }
  ::alarm(0);
}

// A temporary file registered with ScopedTempFile is removed when the process is ended by
// SIGINT, SIGTERM or SIGHUP while it exists (Ctrl-C to mpirun used to leave r.json.tmp.<pid>),
// and the signal still ends the process; once none is registered, the handlers are gone.
TEST_F(FileIo, TempFilesAreRemovedWhenTheProcessIsInterrupted) {
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    const std::string path = (dir_ / fmt::format("r.json.tmp.{}", sig)).string();
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      ScopedTempFile tmp(path);
      std::ofstream(path) << "half of a report";
      ::raise(sig);
      ::_exit(0);  // not reached: the signal ends the process
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == sig) << "signal " << sig << ", status " << status;
    EXPECT_FALSE(fs::exists(path)) << path << " left behind by signal " << sig;
  }
  {
    const std::string path = (dir_ / "t.tmp").string();
    ScopedTempFile tmp(path);
    std::ofstream(path) << "x";
  }
  EXPECT_TRUE(fs::is_empty(dir_));
  struct sigaction now {};
  ::sigaction(SIGTERM, nullptr, &now);
  EXPECT_EQ(now.sa_handler, SIG_DFL);  // restored once no temporary file is registered
}

}  // namespace
}  // namespace magi
