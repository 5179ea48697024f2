// See backend.h.
#include "backend.h"

#include "core/base/error.h"
#include "runtime/cpu_device.h"

#ifdef MAGI_HAVE_CUDA
#include "cuda/flex_attention.h"
#include "runtime/cuda/cuda_device.h"
#include "runtime/cuda/nccl_communicator.h"
#include "runtime/cuda/staged_mpi_communicator.h"
#endif

#include <mpi.h>

#include <algorithm>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

namespace magi::app {

namespace {

#ifdef MAGI_HAVE_CUDA
constexpr bool kCudaBuild = true;
int visible_devices() { return cuda_device_count(); }
bool nccl_in_build() { return nccl_built(); }
std::string bus_id(int index) { return cuda_device_bus_id(index); }
#else
constexpr bool kCudaBuild = false;
int visible_devices() { return 0; }
bool nccl_in_build() { return false; }
std::string bus_id(int) { return {}; }
#endif

struct NodeShape {
  int local_rank = 0;
  int local_size = 1;
  std::string gpu;  // the PCI bus id of the GPU this rank takes (empty: none, or unreadable)
  int sharing = 0;  // ranks of this host taking that same GPU, this one included
};

// Collective over the world. A rank takes visible device (node-local rank mod devices); whether
// two ranks hold the same GPU is decided by the GPUs' bus ids, not by counting: with per-rank
// CUDA_VISIBLE_DEVICES every rank sees one device, a different one.
NodeShape node_shape(int devices) {
  MPI_Comm node;
  MAGI_MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
  NodeShape s;
  MAGI_MPI_CHECK(MPI_Comm_rank(node, &s.local_rank));
  MAGI_MPI_CHECK(MPI_Comm_size(node, &s.local_size));
  constexpr int kIdChars = 32;
  if (devices > 0) s.gpu = bus_id(s.local_rank % devices).substr(0, kIdChars - 1);
  std::vector<char> mine(kIdChars, '\0'), all(static_cast<size_t>(kIdChars) * s.local_size, '\0');
  std::copy(s.gpu.begin(), s.gpu.end(), mine.begin());
  MAGI_MPI_CHECK(MPI_Allgather(mine.data(), kIdChars, MPI_CHAR, all.data(), kIdChars, MPI_CHAR, node));
  MAGI_MPI_CHECK(MPI_Comm_free(&node));
  for (int p = 0; p < s.local_size && !s.gpu.empty(); ++p) {
    s.sharing += s.gpu == std::string(all.data() + static_cast<size_t>(p) * kIdChars);
  }
  return s;
}

std::string host_name() {
  char name[MPI_MAX_PROCESSOR_NAME] = {};
  int len = 0;
  MAGI_MPI_CHECK(MPI_Get_processor_name(name, &len));
  return std::string(name, static_cast<size_t>(len));
}

std::string visible_devices_note() {
  const char* v = std::getenv("CUDA_VISIBLE_DEVICES");
  return v ? fmt::format(" (CUDA_VISIBLE_DEVICES={})", v) : std::string();
}

std::string plural(int n, const char* word) {
  return fmt::format("{} {}{}", n, word, n == 1 ? "" : "s");
}

}  // namespace

void validate_backend_names(const std::string& backend, const std::string& comm) {
  if (backend != "auto" && backend != "cpu" && backend != "gpu") {
    throw UsageError(fmt::format("--backend {}: expected auto, cpu or gpu", backend));
  }
  if (comm != "auto" && comm != "mpi" && comm != "nccl") {
    throw UsageError(fmt::format("--comm {}: expected auto, mpi or nccl", comm));
  }
  if (backend == "cpu" && comm == "nccl") {
    throw UsageError("--comm nccl moves GPU buffers: it needs --backend gpu (or auto on a GPU machine)");
  }
}

BackendChoice choose_backend(const std::string& backend, const std::string& comm) {
  // Every collective first, identically on every rank; then each rank judges what it saw (a
  // rank that threw before a collective would leave the others waiting in it).
  const int devices = visible_devices();
  const NodeShape node = node_shape(devices);
  int least_devices = devices;
  MAGI_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &least_devices, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
  int most[2] = {node.local_size, node.sharing};
  MAGI_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, most, 2, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
  const int max_local = most[0];
  const bool every_rank_sees_one = least_devices > 0;
  const bool gpu_per_rank = most[1] <= 1;
  int rank = 0;
  MAGI_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));

  BackendChoice c;
  if (backend == "cpu") {
    c.reason = "--backend cpu";
  } else if (backend == "gpu") {
    if (!kCudaBuild) {
      throw UsageError("--backend gpu: this magi-bench was built without CUDA (the cpu preset, or no "
                       "nvcc when it was configured; build with `cmake --preset release` where nvcc is)");
    }
    if (devices == 0) {
      throw ConfigError(fmt::format("--backend gpu: rank {} on host {} sees no CUDA device{}", rank,
                                    host_name(), visible_devices_note()));
    }
    c.gpu = true;
    c.reason = "--backend gpu";
  } else if (!kCudaBuild) {
    c.reason = "auto: built without CUDA";
  } else if (!every_rank_sees_one) {
    c.reason = "auto: not every rank sees a CUDA device";
  } else {
    c.gpu = true;
    c.reason = "auto: CUDA build, every rank sees a GPU";
  }
  if (!c.gpu) {
    if (comm == "nccl") {
      throw UsageError(fmt::format("--comm nccl moves GPU buffers, but the backend is cpu ({})", c.reason));
    }
    return c;
  }

  c.device = node.local_rank % devices;
  const std::string sharing = fmt::format("up to {} per host, {} visible to this one",
                                          plural(max_local, "rank"), plural(devices, "GPU"));
  if (comm == "nccl") {
    if (!nccl_in_build()) {
      throw ConfigError("--comm nccl: this magi-bench was built without NCCL (nccl.h and libnccl "
                        "were not found when it was configured); use --comm mpi");
    }
    if (node.sharing > 1) {
      throw ConfigError(fmt::format(
          "--comm nccl: on host {} {} would share GPU {} ({} visible to this rank{}); NCCL needs one "
          "GPU per rank (use --comm mpi to let ranks share a GPU, or launch at most one rank per GPU)",
          host_name(), plural(node.sharing, "rank"), node.gpu, plural(devices, "device"),
          visible_devices_note()));
    }
    c.nccl = true;
    c.reason += fmt::format("; --comm nccl ({})", sharing);
  } else if (comm == "mpi") {
    c.reason += fmt::format("; --comm mpi, staged through pinned host memory ({})", sharing);
  } else if (!nccl_in_build()) {
    c.reason += "; comm auto: mpi, staged through pinned host memory (built without NCCL)";
  } else if (!gpu_per_rank) {
    c.reason += fmt::format("; comm auto: mpi, staged through pinned host memory ({}: ranks share "
                            "GPUs, which NCCL refuses)", sharing);
  } else {
    c.nccl = true;
    c.reason += fmt::format("; comm auto: nccl (one GPU per rank, {})", sharing);
  }
  return c;
}

std::string case_misfit(const BackendChoice& choice, const Case& c) {
  if (!choice.gpu) return {};
  if (c.model.dtype == DType::fp32) {
    return "model.dtype fp32: the gpu backend stores bf16 or fp16 (fp32 is the cpu backend's, "
           "--backend cpu)";
  }
#ifdef MAGI_HAVE_CUDA
  if (!kernels::cuda::head_dim_supported(c.model.head_dim)) {
    return fmt::format("model.head_dim {}: the gpu backend's kernel is built for head dims 64 and 128",
                       c.model.head_dim);
  }
#endif
  return {};
}

Backend::Backend(BackendChoice choice, MpiCommunicator& world, int threads)
    : choice_(std::move(choice)), world_(world), threads_(threads) {}

Backend::~Backend() {
  in_use_.store(nullptr);
  comms_.clear();  // before the devices whose streams they order against
}

Device& Backend::device(DType storage) {
  auto it = devices_.find(storage);
  if (it != devices_.end()) return *it->second;
  std::unique_ptr<Device> d;
#ifdef MAGI_HAVE_CUDA
  if (choice_.gpu) {
    try {
      d = make_cuda_device(choice_.device, storage);
    } catch (const std::runtime_error& e) {  // a CUDA failure (the device's errors carry no fmt)
      throw RuntimeError(fmt::format("GPU {} on host {}: {}", choice_.device, host_name(), e.what()));
    }
  }
#endif
  if (!d) d = std::make_unique<CpuDevice>(threads_);
  d->set_watchdog(world_.watchdog());
  return *devices_.emplace(storage, std::move(d)).first->second;
}

std::string Backend::device_description(DType case_dtype) {
  return device(storage_dtype(case_dtype)).description();
}

std::pair<double, double> Backend::timing_minimums(DType case_dtype) {
  const Device& d = device(storage_dtype(case_dtype));
  return {d.min_warmup_seconds(), d.min_timed_seconds()};
}

Backend::CaseExec Backend::for_case(int cp, DType case_dtype) {
  auto host_it = hosts_.find(cp);
  if (host_it == hosts_.end()) host_it = hosts_.emplace(cp, world_.split_first(cp)).first;
  MpiCommunicator* host = host_it->second.get();
  if (!host) return {};
  const DType storage = storage_dtype(case_dtype);
  Device& dev = device(storage);
  Communicator* data = host;
  if (choice_.gpu) {
    auto& slot = comms_[{cp, storage}];
#ifdef MAGI_HAVE_CUDA
    if (!slot) {
      slot = choice_.nccl ? make_nccl_communicator(*host, dev.stream(), choice_.device)
                          : make_staged_mpi_communicator(*host, dev.stream());
      slot->set_watchdog(host->watchdog());
    }
#endif
    MAGI_CHECK(slot != nullptr, "no data communicator for the gpu backend");
    data = slot.get();
  }
  in_use_.store(data);
  return {host, &dev, data};
}

void Backend::abort_in_flight() {
  if (Communicator* c = in_use_.load()) c->abort();
}

}  // namespace magi::app
