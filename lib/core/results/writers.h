// The printers of a Report, shared by every command that produces case rows: an nccl-tests-style
// table on stdout, JSON and CSV (docs/results_schema.md).
#pragma once

#include "core/results/row.h"

#include <nlohmann/json.hpp>

#include <string>

namespace magi {

// Table: header of column names, one line per row, and a summary.
std::string table_header();
std::string table_row(const Report& report, size_t i);
std::string table_summary(const Report& report);

// The results document, tagged kResultsSchema (core/base/schema.h).
nlohmann::json to_json(const Report& report);
// The results file's text: to_json indented two spaces, each array of numbers on one line.
std::string to_json_text(const Report& report);
// One line per row under a header line.
std::string to_csv(const Report& report);

}  // namespace magi
