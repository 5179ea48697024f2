// The `sequence.documents` section of a workload (configs/README.md): which distribution draws
// the document lengths, and the fields that distribution reads (each reads only its own).
// documents.h samples lengths from the DocumentSpec read here.
#pragma once

#include "core/base/json_reader.h"
#include "core/workload/workload.h"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace magi {

// The keys a documents object may hold (each distribution reads a subset).
const std::vector<std::string>& document_keys();

// Reads the documents object `v` at `path`. `resolved` receives the fields the distribution
// reads, defaults filled in. Throws ConfigError.
DocumentSpec read_documents(const JsonReader& r, const std::string& path,
                            const nlohmann::json& v, nlohmann::json& resolved);

}  // namespace magi
