// Facts about the process and machine that every report header and result file carries.
#pragma once

#include "commands.h"

#include <nlohmann/json.hpp>

#include <string>

namespace magi::app {

std::string hostname();
std::string cpu_model();
std::string mpi_library_version();

// The metadata block of every file magi-bench writes (docs/results_schema.md, "metadata"):
// argv, version, git sha, start time, hosts of every rank, world size, devices, library
// versions, environment variables that change results (OMPI_MCA_*, NCCL_*, CUDA_VISIBLE*,
// MAGI_*, OMP_NUM_THREADS). Collective: every world rank must call it, at the start of the
// command; the complete object is returned on rank 0.
nlohmann::json collect_metadata(const Context& ctx);

// Stamps the end time into that block: call it just before the block is written.
void stamp_end_time(nlohmann::json& metadata);

// The report header lines (nccl-tests style, each starting with '#') for that metadata.
std::string metadata_header(const nlohmann::json& metadata);

}  // namespace magi::app
