#include "case_row.h"

namespace magi::app {

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
  row.details = {{"config", resolved_config(c)}};
  return row;
}

CaseRow skipped_row(const Case& c, const std::string& backend, const std::string& reason) {
  CaseRow row = case_row(c, backend);
  row.skipped = true;
  row.skip_reason = reason;
  return row;
}

}  // namespace magi::app
