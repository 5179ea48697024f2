#include "core/workload/case_inputs.h"

#include "core/base/error.h"
#include "core/mask/catalogue.h"
#include "core/workload/documents.h"

#include <fmt/format.h>

namespace magi {

CaseInputs build_case_inputs(const DocumentSpec& documents, const MaskSpec& mask,
                             int64_t total_tokens) {
  CaseInputs in;
  in.documents = sample_documents(documents, total_tokens);
  in.mask = mask_uses_documents(mask.type)
                ? build_mask(mask, total_tokens, in.documents)
                : build_mask(mask, total_tokens, std::vector<int64_t>{total_tokens});
  if (mask_area(in.mask) == 0) {
    const bool listed = mask.type == "slices";
    throw ConfigError(fmt::format(
        "{}: zero area (no query sees any key); got {} over {} tokens, expected a mask in which "
        "some query sees a key",
        listed ? "mask.slices" : "mask.type",
        listed ? fmt::format("{} slices", mask.slices.size()) : fmt::format("\"{}\"", mask.type),
        total_tokens));
  }
  return in;
}

}  // namespace magi
