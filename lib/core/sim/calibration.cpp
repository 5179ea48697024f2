#include "core/sim/calibration.h"

#include "core/base/error.h"
#include "core/base/file_io.h"
#include "core/base/json_reader.h"
#include "core/base/schema.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <set>

namespace magi {

namespace {

constexpr size_t kMaxCalibrationBytes = 64 << 20;

nlohmann::json tier_json(const LinkTier& t) {
  return {{"bandwidth_gbps", t.bandwidth_gbps}, {"latency_us", t.latency_us}, {"efficiency", t.efficiency}};
}

LinkTier tier_from(const JsonReader& rd, const std::string& path, const nlohmann::json& v) {
  rd.object(path, v, "a link tier");
  rd.known_keys(path, v, {"bandwidth_gbps", "latency_us", "efficiency"});
  for (const char* k : {"bandwidth_gbps", "latency_us", "efficiency"}) {
    if (!v.contains(k)) rd.missing(child_path(path, k), "a number");
  }
  LinkTier t;
  t.bandwidth_gbps = rd.number(child_path(path, "bandwidth_gbps"), v["bandwidth_gbps"], 0, 1e6, true);
  t.latency_us = rd.number(child_path(path, "latency_us"), v["latency_us"], 0, 1e6, false);
  t.efficiency = rd.number(child_path(path, "efficiency"), v["efficiency"], 0, 1, true);
  return t;
}

// Solves the k x k system a x = b (Gaussian elimination with partial pivoting); false if singular.
bool solve(std::vector<std::vector<double>> a, std::vector<double> b, std::vector<double>& x) {
  const size_t k = b.size();
  for (size_t c = 0; c < k; ++c) {
    size_t p = c;
    for (size_t r = c + 1; r < k; ++r)
      if (std::abs(a[r][c]) > std::abs(a[p][c])) p = r;
    if (std::abs(a[p][c]) < 1e-300) return false;
    std::swap(a[p], a[c]);
    std::swap(b[p], b[c]);
    for (size_t r = 0; r < k; ++r) {
      if (r == c) continue;
      const double f = a[r][c] / a[c][c];
      for (size_t j = c; j < k; ++j) a[r][j] -= f * a[c][j];
      b[r] -= f * b[c];
    }
  }
  x.resize(k);
  for (size_t i = 0; i < k; ++i) x[i] = b[i] / a[i][i];
  return true;
}

}  // namespace

Calibration parse_calibration(const nlohmann::json& doc, const std::string& origin) {
  const JsonReader rd(origin);
  rd.object("", doc, "a calibration (magi-bench calibrate --out)");
  rd.known_keys("", doc, {"schema", "device", "kind", "kernel", "links", "thread_efficiency", "validation", "metadata"});
  if (!doc.contains("schema") || doc["schema"] != kCalibrationSchema) {
    rd.fail("schema", "not a calibration", doc.value("schema", nlohmann::json()), std::string(kCalibrationSchema));
  }
  Calibration c;
  if (doc.contains("device") && doc["device"].is_string()) c.device = doc["device"].get<std::string>();
  if (!doc.contains("kind")) rd.missing("kind", "gpu or cpu");
  c.kind = rd.enumerator("kind", doc["kind"], std::array{DeviceKind::gpu, DeviceKind::cpu}, "unknown device kind");
  if (!doc.contains("kernel")) rd.missing("kernel", "a list of kernel coefficients");
  const nlohmann::json& k = rd.array("kernel", doc["kernel"], "a list of kernel coefficients");
  for (size_t i = 0; i < k.size(); ++i) c.kernel.coeffs.push_back(kernel_coeffs_from_json(k[i], origin, item_path("kernel", i)));
  if (c.kernel.coeffs.empty()) rd.fail("kernel", "empty", doc["kernel"], "coefficients for fwd and bwd");
  if (doc.contains("links")) {
    const nlohmann::json& l = rd.object("links", doc["links"], "intra_node and/or inter_node tiers");
    rd.known_keys("links", l, {"intra_node", "inter_node"});
    if (l.contains("intra_node")) c.intra = tier_from(rd, "links.intra_node", l["intra_node"]);
    if (l.contains("inter_node")) c.inter = tier_from(rd, "links.inter_node", l["inter_node"]);
  }
  if (doc.contains("thread_efficiency")) {
    c.thread_efficiency = rd.number("thread_efficiency", doc["thread_efficiency"], 0, 1, false);
  }
  if (doc.contains("validation")) c.validation = doc["validation"];
  return c;
}

Calibration load_calibration(const std::string& path) {
  Calibration c = parse_calibration(parse_json(path, read_file(path, kMaxCalibrationBytes)), path);
  c.path = path;
  return c;
}

nlohmann::json to_json(const Calibration& c) {
  nlohmann::json j{{"schema", kCalibrationSchema}, {"device", c.device}, {"kind", to_string(c.kind)}};
  j["kernel"] = nlohmann::json::array();
  for (const KernelCoeffs& k : c.kernel.coeffs) j["kernel"].push_back(to_json(k));
  if (c.intra || c.inter) {
    j["links"] = nlohmann::json::object();
    if (c.intra) j["links"]["intra_node"] = tier_json(*c.intra);
    if (c.inter) j["links"]["inter_node"] = tier_json(*c.inter);
  }
  if (c.thread_efficiency) j["thread_efficiency"] = *c.thread_efficiency;
  if (!c.validation.is_null()) j["validation"] = c.validation;
  return j;
}

ClusterSpec with_calibration(ClusterSpec cluster, const Calibration& c) {
  if (c.intra) cluster.intra = *c.intra;
  if (c.inter) cluster.inter = *c.inter;
  if (c.thread_efficiency) cluster.thread_efficiency = *c.thread_efficiency;
  return cluster;
}

KernelCoeffs fit_kernel(const std::vector<KernelSample>& all, Pass pass, int head_dim, const KernelTiles& tiles,
                        bool fit_call) {
  std::vector<const KernelSample*> s;
  for (const KernelSample& x : all)
    if (x.pass == pass && x.head_dim == head_dim && x.measured_s > 0) s.push_back(&x);
  MAGI_CHECK(!s.empty(), "no samples to fit the {} pass at head dim {}", to_string(pass), head_dim);
  // Relative residual of sample i: (call + tile T_i + item I_i) / (speed_i m_i) - 1. Every subset of
  // the three coefficients is solved unconstrained; the best one with no negative coefficient wins
  // (exact non-negative least squares for three unknowns).
  auto row = [](const KernelSample& x) {
    const double w = 1.0 / (x.speed * x.measured_s);
    return std::array<double, 3>{w, x.tiles * w, x.items * w};
  };
  double best_err = std::numeric_limits<double>::infinity();
  std::array<double, 3> best{0, 0, 0};
  for (int mask = 1; mask < 8; ++mask) {
    if (!fit_call && (mask & 1)) continue;
    std::vector<int> free;
    for (int j = 0; j < 3; ++j)
      if (mask & (1 << j)) free.push_back(j);
    const size_t k = free.size();
    std::vector<std::vector<double>> a(k, std::vector<double>(k, 0.0));
    std::vector<double> b(k, 0.0), x;
    for (const KernelSample* p : s) {
      const auto r = row(*p);
      for (size_t i = 0; i < k; ++i) {
        b[i] += r[static_cast<size_t>(free[i])];
        for (size_t j = 0; j < k; ++j) a[i][j] += r[static_cast<size_t>(free[i])] * r[static_cast<size_t>(free[j])];
      }
    }
    if (!solve(a, b, x)) continue;
    if (std::any_of(x.begin(), x.end(), [](double v) { return v < 0; })) continue;
    std::array<double, 3> c{0, 0, 0};
    for (size_t i = 0; i < k; ++i) c[static_cast<size_t>(free[i])] = x[i];
    double err = 0;
    for (const KernelSample* p : s) {
      const auto r = row(*p);
      const double e = c[0] * r[0] + c[1] * r[1] + c[2] * r[2] - 1;
      err += e * e;
    }
    if (err < best_err) {
      best_err = err;
      best = c;
    }
  }
  KernelCoeffs out;
  out.pass = pass;
  out.head_dim = head_dim;
  out.tiles = tiles;
  out.call_s = best[0];
  out.tile_s = best[1];
  out.item_s = best[2];
  return out;
}

CpuKernelFit fit_cpu_kernel(std::vector<KernelSample> samples, const std::vector<int>& ranks, ClusterSpec cl,
                            const KernelTiles& tiles) {
  MAGI_CHECK(samples.size() == ranks.size(), "{} samples, {} rank counts", samples.size(), ranks.size());
  std::set<std::pair<Pass, int>> keys;
  for (const KernelSample& x : samples) keys.insert({x.pass, x.head_dim});
  auto fit_at = [&](double eff, double& err) {
    cl.thread_efficiency = eff;
    for (size_t i = 0; i < samples.size(); ++i) samples[i].speed = cl.rank_speed(ranks[i]);
    CpuKernelFit f;
    f.thread_efficiency = eff;
    err = 0;
    for (const auto& [pass, dim] : keys) {
      const KernelCoeffs k = fit_kernel(samples, pass, dim, tiles, false);
      f.kernel.coeffs.push_back(k);
      for (const KernelSample& x : samples) {
        if (x.pass != pass || x.head_dim != dim || !(x.measured_s > 0)) continue;
        const double e = (k.tile_s * x.tiles + k.item_s * x.items) / (x.speed * x.measured_s) - 1;
        err += e * e;
      }
    }
    return f;
  };
  double err = 0, best_err = 0;
  CpuKernelFit best = fit_at(1, best_err);
  std::set<int> threads;
  for (int r : ranks) threads.insert(cl.threads_per_rank(r));
  if (threads.size() < 2) return best;
  best.fitted = true;
  for (double step : {0.01, 0.001}) {
    const double centre = best.thread_efficiency;
    for (int i = -100; i <= 100; ++i) {
      const double eff = centre + i * step;
      if (eff < 0 || eff > 1 || (step < 0.01 && std::abs(i) > 10)) continue;
      CpuKernelFit f = fit_at(eff, err);
      f.fitted = true;
      if (err < best_err) {
        best_err = err;
        best = std::move(f);
      }
    }
  }
  return best;
}

LinkTier fit_link(const std::function<double(const LinkTier&)>& error, double lat_lo, double lat_hi, double bw_lo,
                  double bw_hi) {
  constexpr int kSteps = 16;
  LinkTier best{bw_lo, lat_lo, 1.0};
  double best_err = std::numeric_limits<double>::infinity();
  double llo = std::log(lat_lo), lhi = std::log(lat_hi), blo = std::log(bw_lo), bhi = std::log(bw_hi);
  for (int round = 0; round < 4; ++round) {
    for (int i = 0; i <= kSteps; ++i) {
      for (int j = 0; j <= kSteps; ++j) {
        const LinkTier t{std::exp(blo + (bhi - blo) * j / kSteps), std::exp(llo + (lhi - llo) * i / kSteps), 1.0};
        const double e = error(t);
        if (e < best_err) {
          best_err = e;
          best = t;
        }
      }
    }
    // Refine: a grid two steps wide around the best point, inside the given ranges.
    const double dl = 2 * (lhi - llo) / kSteps, db = 2 * (bhi - blo) / kSteps;
    llo = std::max(std::log(lat_lo), std::log(best.latency_us) - dl);
    lhi = std::min(std::log(lat_hi), std::log(best.latency_us) + dl);
    blo = std::max(std::log(bw_lo), std::log(best.bandwidth_gbps) - db);
    bhi = std::min(std::log(bw_hi), std::log(best.bandwidth_gbps) + db);
  }
  return best;
}

ErrorStats error_stats(const std::vector<double>& rel) {
  ErrorStats s;
  s.count = rel.size();
  if (rel.empty()) return s;
  std::vector<double> a;
  for (double e : rel) a.push_back(std::abs(e));
  std::sort(a.begin(), a.end());
  const size_t n = a.size();
  s.median_abs = n % 2 ? a[n / 2] : 0.5 * (a[n / 2 - 1] + a[n / 2]);
  s.worst_abs = a.back();
  return s;
}

}  // namespace magi
