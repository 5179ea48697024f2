// The mask catalogue as kernel slice lists, for the kernel tests (link magi_core_mask): every
// catalogue type but "slices", over the given documents where the type reads documents, with
// parameters small enough that each type's shape shows at test sizes.
#pragma once

#include "common/kernel_args.h"
#include "core/base/slice.h"
#include "core/mask/catalogue.h"

#include <cstdint>
#include <string>
#include <vector>

namespace magi::kernels::testing {

struct CatalogueCase {
  std::string type;
  std::vector<KernelSlice> slices;
};

inline std::vector<CatalogueCase> catalogue_cases(int64_t total_tokens, const std::vector<int64_t>& docs) {
  std::vector<CatalogueCase> cases;
  for (const std::string& type : magi::mask_types()) {
    if (type == "slices") continue;
    magi::MaskSpec spec;
    spec.type = type;
    if (type.find("sliding_window") != std::string::npos) spec.window = 150;
    if (type.find("block_causal") != std::string::npos) spec.block_tokens = 96;
    if (type == "shared_question") spec.question_tokens = 130;
    if (type == "prefix_lm") spec.prefix_tokens = 333;
    if (type == "sink_sliding_window") spec.sink_tokens = 4;
    const bool by_docs = magi::mask_uses_documents(type);
    cases.push_back(CatalogueCase{
        type, magi::to_kernel_slices(
                  magi::build_mask(spec, total_tokens, by_docs ? docs : std::vector<int64_t>{total_tokens}))});
  }
  return cases;
}

}  // namespace magi::kernels::testing
