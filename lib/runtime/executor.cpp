// The driver shared by every strategy: inputs, timing, byte counting, gathering rank results
// and the check against the single-process reference. Strategy files hold only the data flow.
#include "runtime/executor.h"

#include "core/base/error.h"
#include "core/base/stats.h"
#include "core/plan/hybrid_plan.h"
#include "runtime/exec_detail.h"
#include "runtime/inputs.h"
#include "runtime/min_duration.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <string_view>
#include <thread>

namespace magi {

namespace {

using detail::Local;

// Waits without spinning a core (other ranks may be computing on the same cores).
void wait_sleepy(Communicator& comm, Request* req, const char* what) {
  Watchdog::Wait wait(comm.watchdog(), what);
  while (!req->test()) std::this_thread::sleep_for(std::chrono::microseconds(200));
}

// The device's synchronize() polls the data communicator's async errors for the length of a
// scope (a failed NCCL collective ends the wait with NCCL's message).
class AsyncCheck {
 public:
  AsyncCheck(Device& dev, Communicator& data) : dev_(dev) {
    dev_.set_async_check([&data] { data.check_async_errors(); });
  }
  ~AsyncCheck() { dev_.set_async_check({}); }
  AsyncCheck(const AsyncCheck&) = delete;
  AsyncCheck& operator=(const AsyncCheck&) = delete;

 private:
  Device& dev_;
};

// A watchdog step for the length of a scope.
class Step {
 public:
  Step(Communicator& comm, std::string what) : watchdog_(comm.watchdog()) {
    if (watchdog_) watchdog_->arm(std::move(what));
  }
  ~Step() {
    if (watchdog_) watchdog_->disarm();
  }
  Step(const Step&) = delete;
  Step& operator=(const Step&) = delete;

 private:
  Watchdog* watchdog_;
};

std::unique_ptr<detail::StrategyRunner> make_runner(Device& dev, Communicator& data, const Plan& plan) {
  if (plan.heads > 1) return detail::make_hybrid_runner(dev, data, plan);
  switch (plan.strategy) {
    case Strategy::magi: return detail::make_magi_runner(dev, data, plan);
    case Strategy::ring: return detail::make_ring_runner(dev, data, plan);
    case Strategy::ulysses: return detail::make_ulysses_runner(dev, data, plan);
    case Strategy::allgather: return detail::make_allgather_runner(dev, data, plan);
  }
  throw InternalError("unknown strategy");
}

// Rank 0 gathers every rank's host-layout tensor into global token order.
std::vector<float> gather_global(Communicator& comm, const Plan& plan, const std::vector<float>& local,
                                 int64_t row_elems) {
  const int P = comm.size();
  const int r = comm.rank();
  std::vector<float> global;
  if (r != 0) {
    auto req = comm.group_start({{0, const_cast<float*>(local.data()),
                                  static_cast<int64_t>(local.size()) * 4}},
                                {});
    wait_sleepy(comm, req.get(), "the check's gather to rank 0");
    return global;
  }
  global.assign(plan.total_tokens * row_elems, 0.f);
  std::vector<std::vector<float>> parts(P);
  std::vector<P2POp> recvs;
  for (int p = 1; p < P; ++p) {
    parts[p].resize(total_size(hosted_ranges(plan, p)) * row_elems);
    recvs.push_back({p, parts[p].data(), static_cast<int64_t>(parts[p].size()) * 4});
  }
  parts[0] = local;
  comm.group({}, recvs);
  for (int p = 0; p < P; ++p) {
    for (const RowCopy& s : detail::map_rows({{0, plan.total_tokens}}, hosted_ranges(plan, p))) {
      std::copy_n(parts[p].data() + s.dst_row * row_elems, s.rows * row_elems,
                  global.data() + s.src_row * row_elems);
    }
  }
  return global;
}

// A device buffer's elements on the host, as float.
std::vector<float> download(Device& dev, const Buffer& b) {
  std::vector<float> host(static_cast<size_t>(b.elems()));
  dev.download(b, 0, b.elems(), host.data());
  return host;
}

// Per-step medians over the timed iterations of a pass (each a list of compute steps).
std::vector<double> step_medians(const std::vector<std::vector<double>>& iterations) {
  std::vector<double> out;
  if (iterations.empty()) return out;
  const size_t steps = iterations.front().size();
  for (const auto& it : iterations) {
    MAGI_CHECK(it.size() == steps, "a pass made {} compute steps, an earlier one {}", it.size(), steps);
  }
  for (size_t j = 0; j < steps; ++j) {
    std::vector<double> v;
    for (const auto& it : iterations) v.push_back(it[j]);
    out.push_back(median(v));
  }
  return out;
}

// One tensor of the inputs, seeded, uploaded into a new device buffer: rows of `ranges`.
Buffer upload_input(Device& dev, uint64_t seed, InputTensor t, const std::vector<Range>& ranges,
                    int heads, int d) {
  std::vector<float> host(static_cast<size_t>(total_size(ranges) * heads * d));
  fill_input_rows(seed, t, ranges, heads, d, host.data());
  Buffer b = dev.alloc(static_cast<int64_t>(host.size()), dev.dtype());
  dev.upload(host.data(), b, 0, b.elems());
  dev.synchronize();  // the host array goes now
  return b;
}

}  // namespace

FaultInjection fault_injection_from_env() {
  FaultInjection f;
  const char* env = std::getenv("MAGI_FAIL_RANK");
  if (!env || !*env) return f;
  f.setting = env;
  const std::string_view value(env);
  const size_t colon = value.find(':');
  const std::string_view rank = value.substr(0, colon);
  const std::string_view mode = colon == std::string_view::npos ? "throw" : value.substr(colon + 1);
  const bool digits = !rank.empty() && rank.size() < 9 &&
                      std::all_of(rank.begin(), rank.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
  if (mode == "throw") f.mode = FaultInjection::Mode::fail;
  if (mode == "stall") f.mode = FaultInjection::Mode::stall;
  if (mode == "nan") f.mode = FaultInjection::Mode::nan;
  if (!digits || f.mode == FaultInjection::Mode::none) {
    throw UsageError(fmt::format("MAGI_FAIL_RANK={}: expected RANK or RANK:MODE with MODE throw, "
                                 "stall or nan (a test hook; unset it)", f.setting));
  }
  f.rank = std::stoi(std::string(rank));
  return f;
}

ExecResult execute_plan(Communicator& host, Communicator& data, Device& dev, const Plan& plan,
                        const std::vector<AttnSlice>& mask, const ExecOptions& opt) {
  const FaultInjection fault = fault_injection_from_env();
  const bool faulty = fault.rank == host.rank();
  if (faulty && fault.mode == FaultInjection::Mode::fail) {
    throw RuntimeError(fmt::format("injected failure on rank {} ({}) by MAGI_FAIL_RANK={} (test hook)",
                                   host.rank(), host.host(), fault.setting));
  }
  while (faulty && fault.mode == FaultInjection::Mode::stall) std::this_thread::sleep_for(std::chrono::hours(1));
  if (plan.skipped) {
    throw ConfigError(fmt::format("cannot execute a skipped {} plan: {}", to_string(plan.strategy),
                                  plan.skip_reason));
  }
  if (host.size() != world_size(plan) || data.size() != world_size(plan)) {
    throw RuntimeError(fmt::format("the plan is for cp x heads = {} x {} ranks but the communicators have {} (host) "
                                   "and {} (data)", plan.cp, plan.heads, host.size(), data.size()));
  }
  MAGI_CHECK(host.rank() == data.rank(), "host rank {} is data rank {}", host.rank(), data.rank());
  if (plan.model.dtype != dev.dtype()) {
    throw ConfigError(fmt::format("device {} stores {}; the plan was built for {} "
                                  "(build it with model.dtype = {})",
                                  dev.description(), to_string(dev.dtype()), to_string(plan.model.dtype),
                                  to_string(dev.dtype())));
  }
  MAGI_CHECK(static_cast<int>(plan.ranks.size()) == plan.cp, "plan has {} ranks for cp {}",
             plan.ranks.size(), plan.cp);
  const int r = host.rank();
  dev.set_watchdog(host.watchdog());  // a stuck device ends the job like a stopped peer
  const AsyncCheck async_check(dev, data);

  const std::vector<Range> mine_ranges = hosted_ranges(plan, r);
  // Peers of this rank's head group (hybrid plans): what it sends them is the head dimension's.
  std::vector<int> head_peers;
  for (int p = r - r % plan.heads; plan.heads > 1 && p < r - r % plan.heads + plan.heads; ++p) {
    if (p != r) head_peers.push_back(p);
  }
  auto head_bytes = [&] {
    int64_t b = 0;
    for (int p : head_peers) b += data.sent_bytes_to(p);
    return b;
  };
  Local L;
  L.tokens = total_size(mine_ranges);
  L.hq = plan.model.heads_q;
  L.hkv = plan.model.heads_kv;
  L.head_dim = plan.model.head_dim;
  const int64_t q_elems = L.tokens * L.hq * L.head_dim, kv_elems = L.tokens * L.hkv * L.head_dim;
  L.q = upload_input(dev, opt.seed, InputTensor::q, mine_ranges, L.hq, L.head_dim);
  L.k = upload_input(dev, opt.seed, InputTensor::k, mine_ranges, L.hkv, L.head_dim);
  L.v = upload_input(dev, opt.seed, InputTensor::v, mine_ranges, L.hkv, L.head_dim);
  L.dout = upload_input(dev, opt.seed, InputTensor::dout, mine_ranges, L.hq, L.head_dim);
  L.out = dev.alloc(q_elems, dev.dtype());
  L.lse = dev.alloc(L.tokens * L.hq, DType::fp32);
  L.dq = dev.alloc(q_elems, dev.dtype());
  L.dk = dev.alloc(kv_elems, dev.dtype());
  L.dv = dev.alloc(kv_elems, dev.dtype());
  if (opt.check) {
    // The outputs start as NaN, so that a row no pass writes fails the check (fresh memory is
    // zero on the CPU device, and a missing zero would pass unseen there).
    const float nan = std::numeric_limits<float>::quiet_NaN();
    for (const Buffer* b : {&L.out, &L.lse, &L.dq, &L.dk, &L.dv}) dev.fill(b->data(), b->dtype(), b->elems(), nan);
  }

  auto runner = make_runner(dev, data, plan);
  RankTimes mine;
  mine.rank = r;
  mine.host = host.host();

  // An untimed pass (backward and the check need out and lse).
  auto untimed = [&](auto&& pass) {
    dev.begin_pass();
    pass();
    dev.end_pass();
    data.check_async_errors();
  };
  // Bytes sent so far to ranks on other nodes than this one.
  auto inter_node_sent = [&] {
    int64_t b = 0;
    for (int p = 0; p < plan.cp; ++p) {
      if (p / plan.ranks_per_node != r / plan.ranks_per_node) b += data.sent_bytes_to(p);
    }
    return b;
  };
  auto timed = [&](const char* pass_name, auto&& pass, std::vector<double>& ms, int64_t& bytes,
                   int64_t& bytes_head, int64_t& inter_node_bytes, double& wait_ms,
                   std::vector<double>& compute_ms) {
    std::vector<double> waits;
    std::vector<std::vector<double>> computes;
    // The warm-up: opt.warmup iterations, then as many more as make it last the device's minimum;
    // the timed iterations likewise: opt.iters, then as many more as make them last the device's
    // timed minimum (each the most any rank asks for: every rank runs every iteration, they
    // exchange data). Without a warm-up neither is extended, and no rank asks.
    const bool extend = minimums_apply(opt.warmup, opt.iters);
    int64_t warmup = opt.warmup, iters = opt.iters;
    const auto more_to_last = [&](const char* phase, double min_s, int64_t done, double spent_s) {
      const Step step(host, fmt::format("case {}: {} {}'s length", opt.case_name, pass_name, phase));
      int64_t more = extra_iterations_to_last(min_s, done, spent_s);
      host.all_reduce_max(&more, 1);
      return more;
    };
    auto phase_start = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < warmup + iters; ++i) {
      if (extend && i == opt.warmup) {
        warmup += more_to_last("warm-up", dev.min_warmup_seconds(), opt.warmup, detail::ms_since(phase_start) / 1e3);
      }
      if (i == warmup) phase_start = std::chrono::steady_clock::now();
      const Step step(host, fmt::format("case {}: {} iteration {} of {}", opt.case_name, pass_name,
                                        i + 1, warmup + iters));
      host.barrier();
      dev.synchronize();
      const int64_t b0 = data.sent_bytes(), h0 = head_bytes(), i0 = inter_node_sent();
      const auto t0 = std::chrono::steady_clock::now();
      dev.begin_pass();
      pass();
      const PassStats st = dev.end_pass();
      const double t = st.device_ms >= 0 ? st.device_ms : detail::ms_since(t0);
      data.check_async_errors();
      bytes = data.sent_bytes() - b0;
      bytes_head = head_bytes() - h0;
      inter_node_bytes = inter_node_sent() - i0;
      if (i >= warmup) {
        ms.push_back(t);
        waits.push_back(st.comm_wait_ms);
        computes.push_back(st.compute_ms);
      }
      if (extend && i + 1 == warmup + opt.iters) {
        iters += more_to_last("timed iterations", dev.min_timed_seconds(), opt.iters, detail::ms_since(phase_start) / 1e3);
      }
    }
    wait_ms = median(waits);
    compute_ms = step_medians(computes);
  };
  bool have_fwd = false;
  if (opt.fwd && opt.warmup + opt.iters > 0) {
    timed("forward", [&] { runner->forward(L); }, mine.fwd_ms, mine.fwd_sent_bytes, mine.fwd_sent_head_bytes,
          mine.fwd_inter_node_sent_bytes, mine.fwd_comm_wait_ms, mine.fwd_compute_ms);
    have_fwd = true;
  }
  const bool want_bwd = opt.bwd && (opt.warmup + opt.iters > 0 || opt.check);
  if ((want_bwd || opt.check) && !have_fwd) {
    untimed([&] { runner->forward(L); });
    have_fwd = true;
  }
  bool have_bwd = false;
  if (opt.bwd) {
    if (opt.warmup + opt.iters > 0) {
      timed("backward", [&] { runner->backward(L); }, mine.bwd_ms, mine.bwd_sent_bytes, mine.bwd_sent_head_bytes,
            mine.bwd_inter_node_sent_bytes, mine.bwd_comm_wait_ms, mine.bwd_compute_ms);
    } else if (opt.check) {
      untimed([&] { runner->backward(L); });
    }
    have_bwd = true;
  }
  mine.peak_memory_bytes = dev.peak_memory_bytes();

  ExecResult res;
  // Every rank's times on rank 0: a fixed-size record per rank (the compute steps padded to the
  // most any rank made; each record says how many are its own).
  {
    const size_t nf = mine.fwd_ms.size(), nb = mine.bwd_ms.size();
    int64_t steps[2] = {static_cast<int64_t>(mine.fwd_compute_ms.size()),
                        static_cast<int64_t>(mine.bwd_compute_ms.size())};
    host.all_reduce_max(steps, 2);
    const size_t sf = static_cast<size_t>(steps[0]), sb = static_cast<size_t>(steps[1]);
    constexpr size_t kHead = 12, kHost = 128;
    const size_t doubles = kHead + nf + nb + sf + sb;
    std::vector<double> rec(doubles + kHost / sizeof(double), 0.0);
    rec[0] = r;
    rec[1] = static_cast<double>(mine.fwd_sent_bytes);
    rec[2] = static_cast<double>(mine.bwd_sent_bytes);
    rec[3] = mine.fwd_comm_wait_ms;
    rec[4] = mine.bwd_comm_wait_ms;
    rec[5] = static_cast<double>(mine.peak_memory_bytes);
    rec[6] = static_cast<double>(mine.fwd_compute_ms.size());
    rec[7] = static_cast<double>(mine.bwd_compute_ms.size());
    rec[8] = static_cast<double>(mine.fwd_sent_head_bytes);
    rec[9] = static_cast<double>(mine.bwd_sent_head_bytes);
    rec[10] = static_cast<double>(mine.fwd_inter_node_sent_bytes);
    rec[11] = static_cast<double>(mine.bwd_inter_node_sent_bytes);
    auto at = rec.begin() + kHead;
    at = std::copy(mine.fwd_ms.begin(), mine.fwd_ms.end(), at);
    at = std::copy(mine.bwd_ms.begin(), mine.bwd_ms.end(), at);
    std::copy(mine.fwd_compute_ms.begin(), mine.fwd_compute_ms.end(), at);
    std::copy(mine.bwd_compute_ms.begin(), mine.bwd_compute_ms.end(), at + static_cast<long>(sf));
    std::memcpy(rec.data() + doubles, mine.host.c_str(), std::min(mine.host.size(), kHost - 1));
    std::vector<double> all(rec.size() * host.size());
    host.all_gather(rec.data(), static_cast<int64_t>(rec.size() * sizeof(double)), all.data());
    if (r == 0) {
      for (int p = 0; p < host.size(); ++p) {
        const double* x = all.data() + p * rec.size();
        RankTimes t;
        t.rank = static_cast<int>(x[0]);
        t.fwd_sent_bytes = static_cast<int64_t>(x[1]);
        t.bwd_sent_bytes = static_cast<int64_t>(x[2]);
        t.fwd_comm_wait_ms = x[3];
        t.bwd_comm_wait_ms = x[4];
        t.peak_memory_bytes = static_cast<int64_t>(x[5]);
        t.fwd_sent_head_bytes = static_cast<int64_t>(x[8]);
        t.bwd_sent_head_bytes = static_cast<int64_t>(x[9]);
        t.fwd_inter_node_sent_bytes = static_cast<int64_t>(x[10]);
        t.bwd_inter_node_sent_bytes = static_cast<int64_t>(x[11]);
        const double* y = x + kHead;
        t.fwd_ms.assign(y, y + nf);
        t.bwd_ms.assign(y + nf, y + nf + nb);
        y += nf + nb;
        t.fwd_compute_ms.assign(y, y + static_cast<size_t>(x[6]));
        t.bwd_compute_ms.assign(y + sf, y + sf + static_cast<size_t>(x[7]));
        char name[kHost] = {};
        std::memcpy(name, x + doubles, kHost - 1);
        t.host = name;
        res.ranks.push_back(std::move(t));
      }
    } else {
      res.ranks.push_back(mine);
    }
  }

  if (!opt.check) return res;
  res.check_ran = true;
  const int64_t q_row = int64_t{L.hq} * L.head_dim, kv_row = int64_t{L.hkv} * L.head_dim;
  runner->lse_for_check(L);
  std::vector<float> out = download(dev, L.out);
  if (faulty && fault.mode == FaultInjection::Mode::nan && !out.empty()) {
    out[0] = std::numeric_limits<float>::quiet_NaN();
  }
  out = gather_global(host, plan, out, q_row);
  std::vector<float> lse = gather_global(host, plan, download(dev, L.lse), L.hq);
  std::vector<float> dq, dk, dv;
  if (have_bwd) {
    dq = gather_global(host, plan, download(dev, L.dq), q_row);
    dk = gather_global(host, plan, download(dev, L.dk), kv_row);
    dv = gather_global(host, plan, download(dev, L.dv), kv_row);
  }
  int32_t passed = 1;
  if (r == 0) {
    const Step step(host, fmt::format("case {}: the check's reference on rank 0", opt.case_name));
    // The whole tensors through the same device and kernel, from the same seeded inputs.
    const int64_t S = plan.total_tokens;
    const std::vector<Range> all{{0, S}};
    const Buffer q = upload_input(dev, opt.seed, InputTensor::q, all, L.hq, L.head_dim);
    const Buffer k = upload_input(dev, opt.seed, InputTensor::k, all, L.hkv, L.head_dim);
    const Buffer v = upload_input(dev, opt.seed, InputTensor::v, all, L.hkv, L.head_dim);
    const Buffer dout = upload_input(dev, opt.seed, InputTensor::dout, all, L.hq, L.head_dim);
    const Buffer ref_out = dev.alloc(S * q_row, dev.dtype());
    const Buffer ref_lse = dev.alloc(S * L.hq, DType::fp32);
    auto op = dev.attention({S, S, L.hq, L.hkv, L.head_dim}, to_kernel_slices(mask));
    op->forward(q.data(), k.data(), v.data(), ref_out.data(), ref_lse.f32(), kernels::Into::write);
    const CheckTolerance& tol = check_tolerance(dev.dtype());
    res.checks.push_back(compare_with_reference("out", out, download(dev, ref_out), tol.rel_l2));
    res.checks.push_back(
        compare_with_reference("lse", lse, download(dev, ref_lse), tol.lse_tolerance, tol.lse_bound));
    if (have_bwd) {
      const Buffer rdq = dev.alloc(S * q_row, dev.dtype());
      const Buffer rdk = dev.alloc(S * kv_row, dev.dtype());
      const Buffer rdv = dev.alloc(S * kv_row, dev.dtype());
      op->backward(q.data(), k.data(), v.data(), ref_out.data(), dout.data(), ref_lse.f32(), rdq.data(),
                   rdk.data(), rdv.data(), kernels::Into::write);
      res.checks.push_back(compare_with_reference("dq", dq, download(dev, rdq), tol.rel_l2));
      res.checks.push_back(compare_with_reference("dk", dk, download(dev, rdk), tol.rel_l2));
      res.checks.push_back(compare_with_reference("dv", dv, download(dev, rdv), tol.rel_l2));
    }
    for (const TensorError& c : res.checks) passed &= c.ok ? 1 : 0;
  }
  // Rank 0's verdict to everyone, without spinning the others while it computes.
  if (r == 0) {
    std::vector<P2POp> sends;
    for (int p = 1; p < host.size(); ++p) sends.push_back({p, &passed, sizeof passed});
    host.group(sends, {});
  } else {
    auto req = host.group_start({}, {{0, &passed, sizeof passed}});
    wait_sleepy(host, req.get(), "the check's verdict from rank 0");
  }
  res.check_passed = passed != 0;
  return res;
}

}  // namespace magi
