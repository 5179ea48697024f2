// The mask catalogue (DESIGN.md §1): every named mask generated as a slice list, never as a
// dense matrix. A generator's slices cover exactly the pairs of the mask's dense definition,
// each pair once.
//
// Parameters each type reads from MaskSpec (others must be unset/0):
//   full, causal                          : none
//   varlen_full, varlen_causal            : none (documents from the sequence)
//   sliding_window, varlen_sliding_window : window >= 1     (q sees k in [q - window, q], same doc)
//   block_causal, varlen_block_causal     : block_tokens >= 1 (full inside a block, causal across)
//   shared_question                       : question_tokens >= 1 (the first question_tokens tokens
//                                           are the question, causal; the documents of the rest are
//                                           answers: each sees the whole question and itself causally)
//   prefix_lm                             : prefix_tokens in [0, S] (full prefix, causal suffix)
//   sink_sliding_window                   : sink_tokens >= 0 and window >= 1 (q sees k < sink_tokens
//                                           and k in [q - window, q])
//   slices                                : slices (explicit list, validated: in bounds, no pair twice)
#pragma once

#include "core/base/slice.h"
#include "core/model/vocabulary.h"

#include <cstdint>
#include <string>
#include <vector>

namespace magi {

// Every mask type a workload may name, in catalogue order.
const std::vector<std::string>& mask_types();

// Whether the type splits the sequence into documents (so `sequence.documents` matters).
bool mask_uses_documents(const std::string& type);

// The slices of `spec` over a packed sequence of `total_tokens` tokens whose documents have
// lengths `doc_lengths` (summing to total_tokens; one document for non-varlen types).
// Throws ConfigError naming the field (e.g. "mask.window") when a parameter does not fit.
std::vector<AttnSlice> build_mask(const MaskSpec& spec, int64_t total_tokens,
                                  const std::vector<int64_t>& doc_lengths);

}  // namespace magi
