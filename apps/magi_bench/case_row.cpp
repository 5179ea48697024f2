#include "case_row.h"

#include "core/workload/documents.h"

namespace magi::app {

std::string case_key(const Case& c) {
  nlohmann::json key = c.resolved;
  if (key.contains("parallel")) {
    key["parallel"].erase("cp");
    key["parallel"].erase("strategy");
  }
  key.erase("name");
  return key.dump();
}

CaseRow case_row(const Case& c, const std::string& backend) {
  CaseRow row;
  row.case_name = c.name;
  row.mask = c.mask.type;
  row.total_tokens = c.total_tokens;
  row.cp = c.parallel.cp;
  row.strategy = std::string(to_string(c.parallel.strategy));
  row.backend = backend;
  row.heads_q = c.model.heads_q;
  row.heads_kv = c.model.heads_kv;
  row.head_dim = c.model.head_dim;
  row.case_key = case_key(c);
  row.details = {{"config", c.resolved}};
  return row;
}

CaseRow skipped_row(const Case& c, const std::string& backend, const std::string& reason) {
  CaseRow row = case_row(c, backend);
  row.skipped = true;
  row.skip_reason = reason;
  return row;
}

nlohmann::json document_json(const std::vector<int64_t>& lengths) {
  const DocumentStats s = document_stats(lengths);
  return {{"count", s.count}, {"min", s.min}, {"p50", s.p50}, {"p90", s.p90},
          {"p99", s.p99}, {"max", s.max}, {"mean", s.mean}};
}

}  // namespace magi::app
