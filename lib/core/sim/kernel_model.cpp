#include "core/sim/kernel_model.h"

#include "core/base/error.h"
#include "core/base/json_reader.h"

#include <array>
#include <cmath>
#include <cstdlib>

namespace magi {

std::string_view to_string(Pass p) { return p == Pass::fwd ? "fwd" : "bwd"; }

KernelCoeffs KernelModel::at(Pass pass, int head_dim) const {
  const KernelCoeffs* best = nullptr;
  for (const KernelCoeffs& k : coeffs) {
    if (k.pass != pass) continue;
    if (!best || std::abs(k.head_dim - head_dim) < std::abs(best->head_dim - head_dim)) best = &k;
  }
  if (!best) throw ConfigError(fmt::format("calibration: no kernel coefficients for the {} pass", to_string(pass)));
  KernelCoeffs k = *best;
  if (k.head_dim != head_dim) {
    k.tile_s *= static_cast<double>(head_dim) / k.head_dim;
    k.head_dim = head_dim;
  }
  return k;
}

KernelTiles KernelModel::tiles(int head_dim) const { return at(Pass::fwd, head_dim).tiles; }

double KernelModel::seconds(Pass pass, const KernelWork& w, const ModelShape& m, int heads_q, int heads_kv) const {
  if (w.empty() || heads_q == 0) return 0;
  const KernelCoeffs k = at(pass, m.head_dim);
  const double tiles = static_cast<double>(pass == Pass::fwd ? w.fwd_tiles : w.bwd_tiles) * heads_q;
  const double items = pass == Pass::fwd ? static_cast<double>(w.fwd_items) * heads_q
                                         : static_cast<double>(w.bwd_items) * heads_kv;
  return k.call_s + k.tile_s * tiles + k.item_s * items;
}

nlohmann::json to_json(const KernelTiles& t) {
  return {{"fwd_rows", t.fwd_rows}, {"fwd_keys", t.fwd_keys}, {"bwd_rows", t.bwd_rows}, {"bwd_keys", t.bwd_keys}};
}

nlohmann::json to_json(const KernelCoeffs& k) {
  return {{"pass", to_string(k.pass)},
          {"head_dim", k.head_dim},
          {"tiles", to_json(k.tiles)},
          {"call_s", k.call_s},
          {"tile_s", k.tile_s},
          {"item_s", k.item_s}};
}

KernelTiles kernel_tiles_from_json(const nlohmann::json& t, const std::string& origin, const std::string& path) {
  const JsonReader rd(origin);
  rd.object(path, t, "fwd_rows, fwd_keys, bwd_rows, bwd_keys");
  rd.known_keys(path, t, {"fwd_rows", "fwd_keys", "bwd_rows", "bwd_keys"});
  KernelTiles out;
  int* dst[4] = {&out.fwd_rows, &out.fwd_keys, &out.bwd_rows, &out.bwd_keys};
  const char* names[4] = {"fwd_rows", "fwd_keys", "bwd_rows", "bwd_keys"};
  for (int i = 0; i < 4; ++i) {
    if (!t.contains(names[i])) rd.missing(child_path(path, names[i]), "an integer >= 1");
    *dst[i] = static_cast<int>(rd.integer(child_path(path, names[i]), t[names[i]], 1, 1 << 16));
  }
  return out;
}

KernelCoeffs kernel_coeffs_from_json(const nlohmann::json& j, const std::string& origin, const std::string& path) {
  const JsonReader rd(origin);
  rd.object(path, j, "kernel coefficients");
  rd.known_keys(path, j, {"pass", "head_dim", "tiles", "call_s", "tile_s", "item_s"});
  for (const char* k : {"pass", "head_dim", "tiles", "call_s", "tile_s", "item_s"}) {
    if (!j.contains(k)) rd.missing(child_path(path, k), "see docs/simulation.md");
  }
  KernelCoeffs k;
  k.pass = rd.enumerator(child_path(path, "pass"), j["pass"], std::array{Pass::fwd, Pass::bwd}, "unknown pass");
  k.head_dim = static_cast<int>(rd.integer(child_path(path, "head_dim"), j["head_dim"], 1, 1 << 16));
  k.tiles = kernel_tiles_from_json(j["tiles"], origin, child_path(path, "tiles"));
  k.call_s = rd.number(child_path(path, "call_s"), j["call_s"], 0, 1e6, false);
  k.tile_s = rd.number(child_path(path, "tile_s"), j["tile_s"], 0, 1e6, false);
  k.item_s = rd.number(child_path(path, "item_s"), j["item_s"], 0, 1e6, false);
  return k;
}

}  // namespace magi
