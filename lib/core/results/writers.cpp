#include "core/results/writers.h"

#include "core/base/schema.h"

#include <fmt/format.h>

#include <cctype>
#include <cmath>
#include <limits>

namespace magi {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::string fixed_or_dash(double v, int digits) {
  return std::isfinite(v) ? fmt::format("{:.{}f}", v, digits) : "-";
}

// A rate with at least three significant digits: GPU rates read 612.3, CPU rates 0.00524.
std::string rate_or_dash(double v) {
  if (!std::isfinite(v)) return "-";
  if (v >= 100) return fmt::format("{:.1f}", v);
  if (v >= 1) return fmt::format("{:.2f}", v);
  return fmt::format("{:.3g}", v);
}

// The end of a row: a newline, after "BELOW FLOOR: ..." when it missed a --min-*-tflops floor.
std::string below_floor_marker(const CaseRow& r) {
  std::string s;
  for (const std::string& f : r.below_floor) s += (s.empty() ? "  BELOW FLOOR: " : "; ") + f;
  return s + "\n";
}

}  // namespace

std::string table_header() {
  return fmt::format(
      "#{:>22} {:>22} {:>9} {:>4} {:>9} {:>10} {:>10} {:>9} {:>9} {:>6} {:>10} {:>6} {:>8} {:>6} "
      "{:>6} {:>7}\n"
      "#{:>22} {:>22} {:>9} {:>4} {:>9} {:>10} {:>10} {:>9} {:>9} {:>6} {:>10} {:>6} {:>8} {:>6} "
      "{:>6} {:>7}\n",
      "case", "mask", "tokens", "cp", "strategy", "fwd", "bwd", "fwd", "bwd", "MFU", "comm/rank",
      "vs", "exposed", "imbal", "scale", "check", "", "", "", "", "", "(ms)", "(ms)", "(TF/s/GPU)",
      "(TF/s/GPU)", "(%)", "(MB)", "bound", "comm(%)", "", "eff", "");
}

std::string table_row(const Report& report, size_t i) {
  const CaseRow& r = report.rows.at(i);
  if (r.skipped) {
    return fmt::format(" {:>22} {:>22} {:>9} {:>4} {:>9}   skipped: {}\n", r.case_name, r.mask,
                       r.total_tokens, r.cp, r.strategy, r.skip_reason);
  }
  // No remote K/V at all (cp 1, a block-diagonal dispatch): no ratio, "-".
  const double vs_bound = r.bound_fwd_bytes > 0 ? static_cast<double>(r.planned_fwd_bytes) /
                                                      static_cast<double>(r.bound_fwd_bytes)
                                                : kNaN;
  return fmt::format(
      " {:>22} {:>22} {:>9} {:>4} {:>9} {:>10} {:>10} {:>9} {:>9} {:>6} {:>10} {:>6} {:>8} {:>6} "
      "{:>6} {:>7}",
      r.case_name, r.mask, r.total_tokens, r.cp, r.strategy,
      r.fwd_ran ? fixed_or_dash(r.fwd_ms(), 3) : "-", r.bwd_ran ? fixed_or_dash(r.bwd_ms(), 3) : "-",
      rate_or_dash(r.fwd_tflops_per_gpu()), rate_or_dash(r.bwd_tflops_per_gpu()),
      fixed_or_dash(r.fwd_mfu_pct(), 1),
      fixed_or_dash(static_cast<double>(r.max_rank_fwd_sent_bytes()) / 1e6, 3),
      fixed_or_dash(vs_bound, 2), fixed_or_dash(r.exposed_comm_pct(), 1),
      fixed_or_dash(r.imbalance, 3), fixed_or_dash(report.scaling_efficiency(i), 2),
      to_string(r.check)) + below_floor_marker(r);
}

namespace {

// nccl-tests' minimum-bandwidth verdict, for --min-*-tflops: nothing when no floor was set.
std::string gate_summary(const Report& report) {
  int gated = 0, below = 0;
  for (const CaseRow& r : report.rows) {
    gated += r.gated;
    below += !r.below_floor.empty();
  }
  if (!gated) return "";
  return below ? fmt::format("# Throughput floor (--min-*-tflops) : {} case{} BELOW\n", below, below == 1 ? "" : "s")
               : std::string("# Throughput floor (--min-*-tflops) : every case meets it\n");
}

}  // namespace

std::string table_summary(const Report& report) {
  int ran = 0, skipped = 0;
  std::string bytes_off;  // cases whose measured bytes differ from the plan's
  double fwd_sum = 0, bwd_sum = 0;
  int fwd_n = 0, bwd_n = 0;
  for (const CaseRow& r : report.rows) {
    if (r.skipped) {
      ++skipped;
      continue;
    }
    ++ran;
    if (!r.bytes_match_plan()) bytes_off += " " + r.case_name;
    if (std::isfinite(r.fwd_tflops_per_gpu())) fwd_sum += r.fwd_tflops_per_gpu(), ++fwd_n;
    if (std::isfinite(r.bwd_tflops_per_gpu())) bwd_sum += r.bwd_tflops_per_gpu(), ++bwd_n;
  }
  const int wrong = report.failed_checks();
  const int checked = report.checked_cases();
  // nccl-tests' verdict line; with nothing checked there is no verdict to give.
  const std::string verdict =
      checked == 0 ? std::string("not checked") : fmt::format("{} {}", wrong, wrong ? "FAILED" : "OK");
  return fmt::format(
      "# Out of bounds values : {}\n"
      "# Cases: {} run, {} skipped; checked {}, #wrong {}\n"
      "# Bytes sent (counted from the messages) == planned : {}\n"
      "# Avg TFLOP/s per GPU : fwd {} bwd {}\n",
      verdict, ran, skipped, checked, wrong,
      bytes_off.empty() ? std::string("every case") : "NOT in" + bytes_off,
      fwd_n ? rate_or_dash(fwd_sum / fwd_n) : "-", bwd_n ? rate_or_dash(bwd_sum / bwd_n) : "-") +
      gate_summary(report);
}

namespace {

// The check state as JSON and CSV spell it.
std::string check_name(CheckState s) {
  return s == CheckState::not_run ? "not_run" : s == CheckState::passed ? "passed" : "failed";
}

nlohmann::json finite_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nullptr; }

// Samples are written to 0.1 us: CUDA events resolve about 0.5 us, and a GPU case's timed
// iterations last at least 2 s (lib/runtime/min_duration.h), thousands of samples for a short
// kernel, which at full double precision made one results file 4 MB. Division by the exact 1e4
// gives the double nearest the rounded value, so it prints as its few digits.
nlohmann::json rounded_samples(const std::vector<double>& samples_ms) {
  nlohmann::json out = nlohmann::json::array();
  for (double v : samples_ms) out.push_back(std::round(v * 1e4) / 1e4);
  return out;
}

nlohmann::json timing_json(const TimingSummary& t) {
  return {{"count", t.count}, {"median_ms", t.median_ms}, {"mean_ms", t.mean_ms},
          {"min_ms", t.min_ms}, {"max_ms", t.max_ms}, {"samples_ms", rounded_samples(t.samples_ms)}};
}

nlohmann::json row_json(const Report& report, size_t i) {
  const CaseRow& r = report.rows[i];
  nlohmann::json j = {{"case", r.case_name}, {"case_key", r.case_key}, {"mask", r.mask}, {"total_tokens", r.total_tokens},
                      {"cp", r.cp}, {"strategy", r.strategy}, {"backend", r.backend},
                      {"dtype", r.dtype}, {"heads_q", r.heads_q}, {"heads_kv", r.heads_kv},
                      {"head_dim", r.head_dim}, {"skipped", r.skipped}};
  if (r.skipped) {
    j["skip_reason"] = r.skip_reason;
    j["details"] = r.details;
    return j;
  }
  j["area"] = r.area;
  j["fwd_flops"] = r.fwd_flops();
  j["bwd_flops"] = r.bwd_flops();
  j["fwd_ms"] = r.fwd_ran ? nlohmann::json(r.fwd_ms()) : nullptr;
  j["bwd_ms"] = r.bwd_ran ? nlohmann::json(r.bwd_ms()) : nullptr;
  j["fwd_ms_mean_rank"] = r.fwd_ran ? nlohmann::json(r.fwd_ms_mean_rank()) : nullptr;
  j["bwd_ms_mean_rank"] = r.bwd_ran ? nlohmann::json(r.bwd_ms_mean_rank()) : nullptr;
  j["fwd_tflops_per_gpu"] = finite_or_null(r.fwd_tflops_per_gpu());
  j["bwd_tflops_per_gpu"] = finite_or_null(r.bwd_tflops_per_gpu());
  j["fwd_tflops_per_gpu_mean_rank"] = finite_or_null(r.fwd_tflops_mean_rank());
  j["bwd_tflops_per_gpu_mean_rank"] = finite_or_null(r.bwd_tflops_mean_rank());
  j["peak_tflops"] = r.peak_tflops > 0 ? nlohmann::json(r.peak_tflops) : nullptr;
  j["fwd_mfu_pct"] = finite_or_null(r.fwd_mfu_pct());
  j["planned_fwd_bytes"] = r.planned_fwd_bytes;
  j["planned_bwd_bytes"] = r.planned_bwd_bytes;
  j["measured_fwd_bytes"] = r.measured_fwd_bytes();
  j["measured_bwd_bytes"] = r.measured_bwd_bytes();
  j["zero_redundancy_fwd_bytes"] = r.bound_fwd_bytes;
  j["max_rank_fwd_sent_bytes"] = r.max_rank_fwd_sent_bytes();
  j["max_rank_peak_memory_bytes"] = r.max_rank_peak_memory_bytes();
  j["exposed_comm_pct"] = finite_or_null(r.exposed_comm_pct());
  j["bytes_match_plan"] = r.bytes_match_plan();
  if (r.ranks_per_node > 0) {
    const int64_t pf = r.planned_fwd_inter_node_bytes, mf = r.measured_fwd_inter_node_bytes();
    j["tiers"] = {{"ranks_per_node", r.ranks_per_node},
                  {"planned_fwd_intra_node_bytes", r.planned_fwd_bytes - pf},
                  {"planned_fwd_inter_node_bytes", pf},
                  {"planned_bwd_intra_node_bytes", r.planned_bwd_bytes - 2 * pf},
                  {"planned_bwd_inter_node_bytes", 2 * pf},
                  {"measured_fwd_intra_node_bytes", r.measured_fwd_bytes() - mf},
                  {"measured_fwd_inter_node_bytes", mf},
                  {"measured_bwd_intra_node_bytes", r.measured_bwd_bytes() - r.measured_bwd_inter_node_bytes()},
                  {"measured_bwd_inter_node_bytes", r.measured_bwd_inter_node_bytes()},
                  {"bound_fwd_inter_node_bytes", r.bound_fwd_inter_node_bytes},
                  {"flat_fwd_inter_node_bytes", r.flat_fwd_inter_node_bytes}};
  }
  j["imbalance"] = r.imbalance;
  j["scaling_efficiency"] = finite_or_null(report.scaling_efficiency(i));
  j["check"] = check_name(r.check);
  j["errors"] = nlohmann::json::array();
  for (const TensorError& e : r.errors) {
    j["errors"].push_back({{"tensor", e.name}, {"rel_l2", e.rel_l2}, {"max_abs", e.max_abs},
                           {"bound", to_string(e.bound)}, {"tolerance", e.tolerance}, {"inf_mismatches", e.inf_mismatches},
                           {"ok", e.ok}});
  }
  j["ranks"] = nlohmann::json::array();
  for (const RankRow& k : r.ranks) {
    j["ranks"].push_back({{"rank", k.rank}, {"host", k.host}, {"tokens", k.tokens},
                          {"area", k.area}, {"fwd", timing_json(k.fwd)}, {"bwd", timing_json(k.bwd)},
                          {"fwd_sent_bytes", k.fwd_sent_bytes}, {"bwd_sent_bytes", k.bwd_sent_bytes},
                          {"fwd_inter_node_sent_bytes", k.fwd_inter_node_sent_bytes},
                          {"bwd_inter_node_sent_bytes", k.bwd_inter_node_sent_bytes},
                          {"fwd_comm_wait_ms", k.fwd_comm_wait_ms},
                          {"bwd_comm_wait_ms", k.bwd_comm_wait_ms},
                          {"fwd_compute_ms", k.fwd_compute_ms}, {"bwd_compute_ms", k.bwd_compute_ms},
                          {"peak_memory_bytes", k.peak_memory_bytes}});
  }
  j["details"] = r.details;
  j["gate"] = r.gated ? nlohmann::json{{"passed", r.below_floor.empty()}, {"below_floor", r.below_floor}}
                      : nlohmann::json(nullptr);
  return j;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

std::string csv_number(double v) { return std::isfinite(v) ? fmt::format("{}", v) : ""; }

}  // namespace

nlohmann::json to_json(const Report& report) {
  nlohmann::json j = {{"schema", kResultsSchema}, {"metadata", report.metadata}};
  j["cases"] = nlohmann::json::array();
  for (size_t i = 0; i < report.rows.size(); ++i) j["cases"].push_back(row_json(report, i));
  j["summary"] = {{"cases", report.rows.size()}, {"failed_checks", report.failed_checks()}};
  return j;
}

namespace {

// `text` (JSON indented by nlohmann) with every array that holds only numbers on one line: a
// case's timing samples, thousands in a 2 s GPU window, one per line made a results file three
// times as long. Inside a string nothing changes (a string cannot hold a raw newline, so the
// scanner only has to skip strings, escapes included).
std::string number_arrays_on_one_line(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < text.size()) {
        out += text[++i];
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') in_string = true;
    if (c == '[') {
      std::string compact = "[";
      size_t j = i + 1;
      for (; j < text.size() && text[j] != ']'; ++j) {
        const char d = text[j];
        if (d == ' ' || d == '\n') continue;
        if (!(std::isdigit(static_cast<unsigned char>(d)) || d == ',' || d == '-' || d == '+' || d == '.' ||
              d == 'e' || d == 'E')) {
          break;
        }
        compact += d;
      }
      if (j < text.size() && text[j] == ']') {
        out += compact + ']';
        i = j;
        continue;
      }
    }
    out += c;
  }
  return out;
}

}  // namespace

std::string to_json_text(const Report& report) {
  // argv, environment and host strings may hold bytes that are not UTF-8: replace them rather
  // than throw after the whole run.
  return number_arrays_on_one_line(
             to_json(report).dump(2, ' ', false, nlohmann::json::error_handler_t::replace)) +
         "\n";
}

std::string to_csv(const Report& report) {
  std::string out =
      "case,mask,total_tokens,cp,strategy,backend,dtype,heads_q,heads_kv,head_dim,area,fwd_ms,"
      "bwd_ms,fwd_tflops_per_gpu,bwd_tflops_per_gpu,fwd_tflops_per_gpu_mean_rank,"
      "bwd_tflops_per_gpu_mean_rank,fwd_mfu_pct,planned_fwd_bytes,measured_fwd_bytes,"
      "zero_redundancy_fwd_bytes,max_rank_fwd_sent_bytes,max_rank_peak_memory_bytes,exposed_comm_pct,imbalance,"
      "scaling_efficiency,check,skip_reason\n";
  for (size_t i = 0; i < report.rows.size(); ++i) {
    const CaseRow& r = report.rows[i];
    const bool run = !r.skipped;
    out += fmt::format(
        "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
        csv_field(r.case_name), csv_field(r.mask), r.total_tokens, r.cp, r.strategy, r.backend,
        r.dtype, r.heads_q, r.heads_kv, r.head_dim, r.area,
        run && r.fwd_ran ? csv_number(r.fwd_ms()) : "", run && r.bwd_ran ? csv_number(r.bwd_ms()) : "",
        run ? csv_number(r.fwd_tflops_per_gpu()) : "", run ? csv_number(r.bwd_tflops_per_gpu()) : "",
        run ? csv_number(r.fwd_tflops_mean_rank()) : "",
        run ? csv_number(r.bwd_tflops_mean_rank()) : "", run ? csv_number(r.fwd_mfu_pct()) : "",
        r.planned_fwd_bytes, r.measured_fwd_bytes(), r.bound_fwd_bytes,
        r.max_rank_fwd_sent_bytes(), r.max_rank_peak_memory_bytes(),
        run ? csv_number(r.exposed_comm_pct()) : "",
        run ? csv_number(r.imbalance) : "", run ? csv_number(report.scaling_efficiency(i)) : "",
        r.skipped ? "skipped" : check_name(r.check),
        csv_field(r.skip_reason));
  }
  return out;
}

}  // namespace magi
