// The `mask` section of a workload (configs/README.md): one mask object, or a list of
// alternatives, each swept by its own lists; an explicit `slices` list is read and checked here,
// the catalogue (core/mask) checks the parameters against a sequence.
#pragma once

#include "core/base/json_reader.h"
#include "core/model/vocabulary.h"
#include "core/workload/sweep.h"

#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace magi {

// One point of the mask's sweep.
struct MaskSweepPoint {
  MaskSpec spec;
  std::shared_ptr<const nlohmann::json> resolved;  // the point as resolved, slices included;
                                                   // shared by every case with this mask
  std::map<std::string, std::string> paths;        // field -> where its value is in the file
};

// The keys a mask object may hold.
std::vector<std::string> mask_keys();

// The mask's sweep points: the alternatives' points, in order. `resolved` receives the section
// with defaults filled in (a list when the file gives alternatives). Throws ConfigError.
std::vector<MaskSweepPoint> read_masks(const JsonReader& r, const nlohmann::json& v,
                                       nlohmann::json& resolved);

// A catalogue message names a mask field as "mask.<key>..."; this points it at where the
// point's value is in the file ("mask[2].window", "mask.window[1]"). Other messages are kept.
std::string relocate_mask_message(const std::string& message, const MaskSweepPoint& point);

}  // namespace magi
