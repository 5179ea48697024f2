// Which device and which data communicator `magi-bench run` uses (--backend, --comm), decided
// once per job, identically on every rank, with the reason printed in the run header; and the
// devices and communicators built from that choice, reused across the cases of a sweep.
//
//   --backend auto : gpu when this is a CUDA build and every rank sees a CUDA device, else cpu.
//   --comm auto    : gpu: nccl when this build has NCCL and no two ranks take the same GPU (NCCL
//                    refuses that), else mpi (staged through pinned host memory); cpu: mpi.
// A rank's GPU is its node-local rank (MPI_Comm_split_type) modulo the devices it sees; GPUs are
// told apart by PCI bus id, so per-rank CUDA_VISIBLE_DEVICES (one device each) is one GPU per rank.
#pragma once

#include "commands.h"

#include "common/dtype.h"
#include "runtime/communicator.h"
#include "runtime/device.h"
#include "runtime/mpi_communicator.h"

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <utility>

namespace magi::app {

struct BackendChoice {
  bool gpu = false;     // the CUDA device; else the CPU device
  bool nccl = false;    // gpu only: NCCL moves device buffers; else MPI (staged on a GPU)
  int device = -1;      // gpu: this rank's CUDA device
  std::string reason;   // why, for the run header ("auto: 4 ranks on 1 host, 1 GPU ...")
  std::string name() const { return gpu ? "gpu" : "cpu"; }
  std::string comm_name() const { return nccl ? "nccl" : "mpi"; }
};

// UsageError for a name other than auto/cpu/gpu or auto/nccl/mpi, or a pair that cannot go
// together (--backend cpu --comm nccl). Local: safe inside preflight().
void validate_backend_names(const std::string& backend, const std::string& comm);

// Collective over MPI_COMM_WORLD (call it inside preflight(): it throws UsageError/ConfigError
// naming the rank and host that cannot follow the request: a build without CUDA or NCCL, a rank
// that sees no device, more ranks on a host than GPUs with --comm nccl).
BackendChoice choose_backend(const std::string& backend, const std::string& comm);

// Why a case cannot run on the chosen backend (empty: it can): the gpu backend stores bf16 or
// fp16 (model.dtype fp32 is the cpu backend's) and its kernel has head dims 64 and 128.
std::string case_misfit(const BackendChoice& choice, const Case& c);

// The ranks, device and data communicator of each case, built on first use and kept: the case
// communicators per cp, devices per dtype, data communicators per (cp, dtype). NCCL communicators
// are costly to create; a sweep reuses them.
class Backend {
 public:
  Backend(BackendChoice choice, MpiCommunicator& world, int threads);
  ~Backend();
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  const BackendChoice& choice() const { return choice_; }
  // What stores a case's tensors: fp32 on the CPU; the case's dtype (bf16/fp16) on a GPU.
  DType storage_dtype(DType case_dtype) const { return choice_.gpu ? case_dtype : DType::fp32; }
  // One line on this rank's device ("NVIDIA H200 (sm_90, 132 SMs), bf16", "cpu (fp32, 2 threads)").
  std::string device_description(DType case_dtype);
  // This rank's device's minimum warm-up and timed seconds of a timed pass
  // (Device::min_warmup_seconds, min_timed_seconds): the floor of a case's time.
  std::pair<double, double> timing_minimums(DType case_dtype);

  struct CaseExec {
    MpiCommunicator* host = nullptr;  // the case's ranks (world ranks < cp); null: sit this case out
    Device* device = nullptr;
    Communicator* data = nullptr;     // moves the device's buffers (the host communicator on a CPU)
  };
  // Collective over the world the first time a cp is seen, and over the case's ranks the first
  // time a (cp, dtype) pair is.
  CaseExec for_case(int cp, DType case_dtype);

  // From the watchdog's thread, before the job is taken down: aborts the data communicator in
  // use (NCCL operations in flight would otherwise keep the process alive).
  void abort_in_flight();

 private:
  Device& device(DType storage);

  BackendChoice choice_;
  MpiCommunicator& world_;
  int threads_ = 1;
  std::map<int, std::unique_ptr<MpiCommunicator>> hosts_;  // null entries: this rank sits out
  std::map<DType, std::unique_ptr<Device>> devices_;
  std::map<std::pair<int, DType>, std::unique_ptr<Communicator>> comms_;
  std::atomic<Communicator*> in_use_{nullptr};
};

}  // namespace magi::app
