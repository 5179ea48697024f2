// A communicator for CUDA device buffers over NCCL (docs/execution.md, "Communicators for device
// buffers").
//
// Bootstrap: rank 0 of the host MpiCommunicator makes the NCCL unique id, the host communicator
// broadcasts it, and every rank joins with ncclCommInitRankConfig on `device`. The communicator
// is non-blocking (config.blocking = 0): no NCCL call waits for peers inside NCCL; each wait is a
// poll of ncclCommGetAsyncError with sleeps in a Watchdog::Wait scope, so a stopped peer ends
// the job through the watchdog, and abort() never races a thread blocked inside NCCL.
//
// Every operation runs on the communicator's own stream: an event recorded on the compute stream
// is waited on there (so sends follow the compute work enqueued so far), the messages are one
// NCCL group (ncclSend/ncclRecv per non-empty peer, ncclAllGather for an equal-size contiguous
// all-gather), self parts are device-to-device copies, and a done event is recorded.
// Request::test() queries that event and the communicator's async error; Request::wait() makes
// the compute stream wait on it (it does not block the host). The blocking calls also wait on
// the host for completion.
//
// barrier, all_reduce_* and broadcast take host memory and go to the host communicator.
// sent_bytes() counts what MpiCommunicator counts for the same call (bytes to other ranks).
// check_async_errors() throws RuntimeError quoting NCCL's error; abort() calls ncclCommAbort
// and may be called from the watchdog's thread. Requests must not outlive the communicator. Its
// watchdog starts as the host communicator's (which bounds the bootstrap's broadcast).
#pragma once

#include "runtime/mpi_communicator.h"

#include <memory>

namespace magi {

// Whether this build has NCCL (found at configure time).
bool nccl_built();

// Collective over `host` (which must outlive the result). `compute_stream` is the cudaStream_t
// (as void*) of the device whose buffers it moves; `device` that device's CUDA ordinal (made
// current here). Without NCCL in this build: ConfigError.
std::unique_ptr<Communicator> make_nccl_communicator(MpiCommunicator& host, void* compute_stream,
                                                     int device);

}  // namespace magi
