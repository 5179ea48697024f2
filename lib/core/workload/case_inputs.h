// What one case runs on, built in one place for every command and for the workload's own
// validation: the documents sampled from the spec, then the mask's slices over them.
#pragma once

#include "core/base/slice.h"
#include "core/model/vocabulary.h"
#include "core/workload/workload.h"

#include <cstdint>
#include <vector>

namespace magi {

struct CaseInputs {
  std::vector<int64_t> documents;  // document lengths in pack order, summing to total_tokens
  std::vector<AttnSlice> mask;     // the mask over the packed sequence; area > 0
};

// Samples the documents, then builds the mask over them (a mask type that does not split the
// sequence into documents sees one document of total_tokens). Throws ConfigError naming the field
// ("sequence.documents: ...", "mask.window: ...") for a spec that does not fit total_tokens, and
// for a mask in which no query sees any key (area 0: nothing to measure).
CaseInputs build_case_inputs(const DocumentSpec& documents, const MaskSpec& mask,
                             int64_t total_tokens);

}  // namespace magi
