// The kernel-efficiency model: seconds of one kernel call from what it does (core/sim/kernel_work.h),
// per pass, linear in three fitted coefficients:
//   t = call_s + tile_s x tiles x heads + item_s x items x heads
// Tiles are charged whole whether the mask fills them or not (tile fill), items pay their cold
// start and epilogue (short documents mean many short items: rows per slice), and the head layout
// enters through the item count (a backward item walks its whole GQA group). Coefficients are
// fitted per pass and head dim (magi-bench calibrate); a head dim without its own is served by the
// nearest one, tile_s scaled by the ratio of head dims (work per tile is linear in it).
#pragma once

#include "core/model/vocabulary.h"
#include "core/sim/kernel_work.h"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace magi {

enum class Pass { fwd, bwd };
std::string_view to_string(Pass p);

struct KernelCoeffs {
  Pass pass = Pass::fwd;
  int head_dim = 128;
  KernelTiles tiles;      // the tiles the kernel uses at this head dim (1 x 1 for the CPU reference)
  double call_s = 0;      // per call: launch, fixed passes
  double tile_s = 0;      // per tile per head
  double item_s = 0;      // per item per head
};

struct KernelModel {
  std::vector<KernelCoeffs> coeffs;  // at most one per (pass, head_dim)

  // The coefficients for (pass, head_dim): its own, else the nearest head dim's with tile_s
  // scaled. ConfigError when the model has none for the pass.
  KernelCoeffs at(Pass pass, int head_dim) const;
  // Tiles of the kernel at a head dim (the forward entry's; both passes share one record).
  KernelTiles tiles(int head_dim) const;
  // Seconds of one call on `work` counted with tiles(m.head_dim), for heads_q query heads and
  // heads_kv key/value heads (a Ulysses rank computes a share of the heads). 0 for no work.
  double seconds(Pass pass, const KernelWork& work, const ModelShape& m, int heads_q, int heads_kv) const;
};

nlohmann::json to_json(const KernelCoeffs& k);
nlohmann::json to_json(const KernelTiles& t);  // what kernel_tiles_from_json reads
KernelCoeffs kernel_coeffs_from_json(const nlohmann::json& j, const std::string& origin, const std::string& path);
// {"fwd_rows", "fwd_keys", "bwd_rows", "bwd_keys"} (integers >= 1, all present, no other key) at
// `path` of file `origin`; a bad one is a ConfigError naming it.
KernelTiles kernel_tiles_from_json(const nlohmann::json& t, const std::string& origin, const std::string& path);

}  // namespace magi
