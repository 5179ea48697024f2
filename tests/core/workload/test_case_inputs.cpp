// A case's inputs: the documents sampled, the mask built over them (one document for a mask that
// does not read documents), and a mask of zero area refused.
#include "core/base/error.h"
#include "core/mask/catalogue.h"
#include "core/workload/case_inputs.h"
#include "core/workload/documents.h"

#include <gtest/gtest.h>

namespace magi {
namespace {

DocumentSpec fixed_documents(int64_t tokens) {
  DocumentSpec d;
  d.distribution = DocDistribution::fixed;
  d.tokens = tokens;
  return d;
}

TEST(CaseInputs, DocumentsThenTheMaskOverThem) {
  const DocumentSpec docs = fixed_documents(100);
  MaskSpec varlen;
  varlen.type = "varlen_causal";
  const CaseInputs in = build_case_inputs(docs, varlen, 1000);
  EXPECT_EQ(in.documents, sample_documents(docs, 1000));
  EXPECT_EQ(in.mask, build_mask(varlen, 1000, in.documents));
  EXPECT_EQ(in.mask.size(), in.documents.size());  // one causal slice per document

  // A mask that reads no documents sees the whole pack; the documents are still sampled (reports
  // state them for every case).
  MaskSpec causal;
  const CaseInputs whole = build_case_inputs(docs, causal, 1000);
  EXPECT_EQ(whole.documents, in.documents);
  EXPECT_EQ(whole.mask, build_mask(causal, 1000, {1000}));
  EXPECT_EQ(mask_area(whole.mask), 1000 * 1001 / 2);
}

TEST(CaseInputs, ErrorsNameTheField) {
  MaskSpec window;
  window.type = "sliding_window";
  try {
    build_case_inputs(DocumentSpec{}, window, 1000);
    FAIL() << "accepted a sliding window without a window";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("mask.window", 0), 0u) << e.what();
  }
}

TEST(CaseInputs, ZeroAreaIsRefused) {
  MaskSpec listed;
  listed.type = "slices";
  listed.slices = {AttnSlice{{0, 8}, {0, 4}, SliceType::bi_causal},  // lk < lq: empty band
                   AttnSlice{{8, 8}, {0, 16}, SliceType::full}};     // no query
  try {
    build_case_inputs(DocumentSpec{}, listed, 16);
    FAIL() << "accepted a mask of zero area";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(),
                 "mask.slices: zero area (no query sees any key); got 2 slices over 16 tokens, "
                 "expected a mask in which some query sees a key");
  }
  listed.slices.push_back(AttnSlice{{15, 16}, {0, 1}, SliceType::full});
  EXPECT_EQ(mask_area(build_case_inputs(DocumentSpec{}, listed, 16).mask), 1);
}

}  // namespace
}  // namespace magi
