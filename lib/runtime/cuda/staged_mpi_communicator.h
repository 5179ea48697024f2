// A communicator for CUDA device buffers over MPI that is not CUDA-aware: every message is
// staged through pinned host memory (docs/execution.md, "Communicators for device buffers").
// It lets several ranks share one GPU and serves clusters without NCCL.
//
// A send is ordered after the work the compute stream had enqueued when the call was made: the
// copy stream waits on an event recorded there, copies the outgoing bytes into pinned memory,
// and the host waits for those copies (inside a Watchdog::Wait scope) before handing the pinned
// buffers to the wrapped MpiCommunicator's non-blocking calls. Request::test() advances MPI and
// says whether the messages have arrived; Request::wait() waits for them, copies the received
// bytes to the device on the copy stream and makes the compute stream wait for those copies (it
// returns without waiting for the device). Self parts of all_to_all_v and all_gather_v are
// device-to-device copies on the compute stream, never staged.
//
// Pinned staging buffers are pooled per communicator (one pair per request in flight), grown
// when a call needs more and reused afterwards: once warm, no call allocates.
//
// barrier, all_reduce_* and broadcast take host memory and go to the wrapped communicator
// unchanged. sent_bytes() counts what MpiCommunicator counts for the same call (bytes to other
// ranks); the wrapped communicator's own counter also moves, as it sends the staged bytes.
//
// Uses the CUDA device current when it is made; requests must not outlive the communicator. Its
// watchdog starts as the host communicator's: it bounds the waits for staging copies, the host
// communicator's bounds the MPI waits.
#pragma once

#include "runtime/mpi_communicator.h"

#include <memory>

namespace magi {

// `host` must outlive the returned communicator.
// `compute_stream` is the cudaStream_t (as void*) of the device the buffers belong to.
std::unique_ptr<Communicator> make_staged_mpi_communicator(MpiCommunicator& host,
                                                           void* compute_stream);

}  // namespace magi
