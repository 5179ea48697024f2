// The driver shared by every strategy: inputs, timing, byte counting, gathering rank results
// and the check against the single-process reference. Strategy files hold only the data flow.
#include "runtime/executor.h"

#include "core/base/error.h"
#include "core/base/stats.h"
#include "runtime/exec_detail.h"
#include "runtime/inputs.h"

#include "cpu/reference_attention.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string_view>
#include <thread>

namespace magi {

namespace {

using detail::Local;
using detail::PassStats;

// Waits without spinning a core (other ranks may be computing on the same cores).
void wait_sleepy(Communicator& comm, Request* req, const char* what) {
  Watchdog::Wait wait(comm.watchdog(), what);
  while (!req->test()) std::this_thread::sleep_for(std::chrono::microseconds(200));
}

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

std::unique_ptr<detail::StrategyRunner> make_runner(Communicator& comm, const Plan& plan,
                                                    int threads) {
  switch (plan.strategy) {
    case Strategy::magi: return detail::make_magi_runner(comm, plan, threads);
    case Strategy::ring: return detail::make_ring_runner(comm, plan, threads);
    case Strategy::ulysses: return detail::make_ulysses_runner(comm, plan, threads);
    case Strategy::allgather: return detail::make_allgather_runner(comm, plan, threads);
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
    parts[p].resize(plan.ranks[p].tokens * row_elems);
    recvs.push_back({p, parts[p].data(), static_cast<int64_t>(parts[p].size()) * 4});
  }
  parts[0] = local;
  comm.group({}, recvs);
  for (int p = 0; p < P; ++p) {
    auto segs = detail::map_rows({{0, plan.total_tokens}}, plan.ranks[p].q_ranges);
    detail::copy_rows(detail::inverse(segs), parts[p].data(), global.data(), row_elems);
  }
  return global;
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

ExecResult execute_plan(Communicator& comm, const Plan& plan, const std::vector<AttnSlice>& mask,
                        const ExecOptions& opt) {
  const FaultInjection fault = fault_injection_from_env();
  const bool faulty = fault.rank == comm.rank();
  if (faulty && fault.mode == FaultInjection::Mode::fail) {
    throw RuntimeError(fmt::format("injected failure on rank {} ({}) by MAGI_FAIL_RANK={} (test hook)",
                                   comm.rank(), comm.host(), fault.setting));
  }
  while (faulty && fault.mode == FaultInjection::Mode::stall) std::this_thread::sleep_for(std::chrono::hours(1));
  if (plan.skipped) {
    throw ConfigError(fmt::format("cannot execute a skipped {} plan: {}", to_string(plan.strategy),
                                  plan.skip_reason));
  }
  if (comm.size() != plan.cp) {
    throw RuntimeError(fmt::format("the plan is for cp = {} ranks but the communicator has {}",
                                   plan.cp, comm.size()));
  }
  if (plan.model.dtype != DType::fp32) {
    throw ConfigError(fmt::format("the cpu backend stores fp32; the plan was built for {} "
                                  "(build it with model.dtype = fp32)",
                                  to_string(plan.model.dtype)));
  }
  MAGI_CHECK(static_cast<int>(plan.ranks.size()) == plan.cp, "plan has {} ranks for cp {}",
             plan.ranks.size(), plan.cp);
  const int r = comm.rank();
  int threads = opt.threads;
  if (threads <= 0) {
    threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / comm.size());
  }

  const RankPlan& me = plan.ranks[r];
  Local L;
  L.tokens = me.tokens;
  L.hq = plan.model.heads_q;
  L.hkv = plan.model.heads_kv;
  L.d = plan.model.head_dim;
  const int64_t q_elems = L.tokens * L.hq * L.d, kv_elems = L.tokens * L.hkv * L.d;
  L.q.resize(q_elems);
  L.k.resize(kv_elems);
  L.v.resize(kv_elems);
  L.dout.resize(q_elems);
  fill_input_rows(opt.seed, InputTensor::q, me.q_ranges, L.hq, L.d, L.q.data());
  fill_input_rows(opt.seed, InputTensor::k, me.q_ranges, L.hkv, L.d, L.k.data());
  fill_input_rows(opt.seed, InputTensor::v, me.q_ranges, L.hkv, L.d, L.v.data());
  fill_input_rows(opt.seed, InputTensor::dout, me.q_ranges, L.hq, L.d, L.dout.data());
  L.out.assign(q_elems, 0.f);
  L.lse.assign(L.tokens * L.hq, 0.f);
  L.dq.assign(q_elems, 0.f);
  L.dk.assign(kv_elems, 0.f);
  L.dv.assign(kv_elems, 0.f);

  auto runner = make_runner(comm, plan, threads);
  RankTimes mine;
  mine.rank = r;
  mine.host = comm.host();

  auto timed = [&](const char* pass_name, auto&& pass, std::vector<double>& ms, int64_t& bytes,
                   double& wait_ms) {
    std::vector<double> waits;
    for (int i = 0; i < opt.warmup + opt.iters; ++i) {
      const Step step(comm, fmt::format("case {}: {} iteration {} of {}", opt.case_name, pass_name,
                                        i + 1, opt.warmup + opt.iters));
      comm.barrier();
      const int64_t b0 = comm.sent_bytes();
      PassStats st;
      const auto t0 = std::chrono::steady_clock::now();
      pass(st);
      const double t = detail::ms_since(t0);
      bytes = comm.sent_bytes() - b0;
      if (i >= opt.warmup) {
        ms.push_back(t);
        waits.push_back(st.comm_wait_ms);
      }
    }
    wait_ms = median(waits);
  };
  bool have_fwd = false;
  if (opt.fwd && opt.warmup + opt.iters > 0) {
    timed("forward", [&](PassStats& st) { runner->forward(L, st); }, mine.fwd_ms, mine.fwd_sent_bytes,
          mine.fwd_comm_wait_ms);
    have_fwd = true;
  }
  const bool want_bwd = opt.bwd && (opt.warmup + opt.iters > 0 || opt.check);
  if ((want_bwd || opt.check) && !have_fwd) {
    PassStats st;
    runner->forward(L, st);  // backward and the check need out and lse; not timed
    have_fwd = true;
  }
  bool have_bwd = false;
  if (opt.bwd) {
    if (opt.warmup + opt.iters > 0) {
      timed("backward", [&](PassStats& st) { runner->backward(L, st); }, mine.bwd_ms, mine.bwd_sent_bytes,
            mine.bwd_comm_wait_ms);
    } else if (opt.check) {
      PassStats st;
      runner->backward(L, st);
    }
    have_bwd = true;
  }

  ExecResult res;
  // Every rank's times on rank 0: a fixed-size record per rank.
  {
    const size_t nf = mine.fwd_ms.size(), nb = mine.bwd_ms.size();
    constexpr size_t kHost = 128;
    const size_t doubles = 5 + nf + nb;
    std::vector<double> rec(doubles + kHost / sizeof(double), 0.0);
    rec[0] = r;
    rec[1] = static_cast<double>(mine.fwd_sent_bytes);
    rec[2] = static_cast<double>(mine.bwd_sent_bytes);
    rec[3] = mine.fwd_comm_wait_ms;
    rec[4] = mine.bwd_comm_wait_ms;
    std::copy(mine.fwd_ms.begin(), mine.fwd_ms.end(), rec.begin() + 5);
    std::copy(mine.bwd_ms.begin(), mine.bwd_ms.end(), rec.begin() + 5 + static_cast<long>(nf));
    std::memcpy(rec.data() + doubles, mine.host.c_str(), std::min(mine.host.size(), kHost - 1));
    std::vector<double> all(rec.size() * comm.size());
    comm.all_gather(rec.data(), static_cast<int64_t>(rec.size() * sizeof(double)), all.data());
    if (r == 0) {
      for (int p = 0; p < comm.size(); ++p) {
        const double* x = all.data() + p * rec.size();
        RankTimes t;
        t.rank = static_cast<int>(x[0]);
        t.fwd_sent_bytes = static_cast<int64_t>(x[1]);
        t.bwd_sent_bytes = static_cast<int64_t>(x[2]);
        t.fwd_comm_wait_ms = x[3];
        t.bwd_comm_wait_ms = x[4];
        t.fwd_ms.assign(x + 5, x + 5 + nf);
        t.bwd_ms.assign(x + 5 + nf, x + 5 + nf + nb);
        char host[kHost] = {};
        std::memcpy(host, x + doubles, kHost - 1);
        t.host = host;
        res.ranks.push_back(std::move(t));
      }
    } else {
      res.ranks.push_back(mine);
    }
  }

  if (!opt.check) return res;
  res.check_ran = true;
  const int64_t q_row = int64_t{L.hq} * L.d, kv_row = int64_t{L.hkv} * L.d;
  runner->lse_for_check(L);
  if (faulty && fault.mode == FaultInjection::Mode::nan && !L.out.empty()) {
    L.out[0] = std::numeric_limits<float>::quiet_NaN();
  }
  std::vector<float> out = gather_global(comm, plan, L.out, q_row);
  std::vector<float> lse = gather_global(comm, plan, L.lse, L.hq);
  std::vector<float> dq, dk, dv;
  if (have_bwd) {
    dq = gather_global(comm, plan, L.dq, q_row);
    dk = gather_global(comm, plan, L.dk, kv_row);
    dv = gather_global(comm, plan, L.dv, kv_row);
  }
  int32_t passed = 1;
  if (r == 0) {
    const Step step(comm, fmt::format("case {}: the check's reference on rank 0", opt.case_name));
    const int64_t S = plan.total_tokens;
    const std::vector<Range> all{{0, S}};
    std::vector<float> q(S * q_row), k(S * kv_row), v(S * kv_row), dout(S * q_row);
    fill_input_rows(opt.seed, InputTensor::q, all, L.hq, L.d, q.data());
    fill_input_rows(opt.seed, InputTensor::k, all, L.hkv, L.d, k.data());
    fill_input_rows(opt.seed, InputTensor::v, all, L.hkv, L.d, v.data());
    fill_input_rows(opt.seed, InputTensor::dout, all, L.hq, L.d, dout.data());
    const auto slices = to_kernel_slices(mask);
    const kernels::AttnShape shape{S, S, L.hq, L.hkv, L.d};
    const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(L.d)));
    const int ref_threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
    std::vector<float> ref_out(S * q_row), ref_lse(S * L.hq);
    kernels::cpu::attention_forward(shape, slices.data(), slices.size(), q.data(), k.data(),
                                    v.data(), scale, ref_out.data(), ref_lse.data(), ref_threads);
    // fp32 storage, float64 accumulation in every kernel: differences come from the fp32
    // rounding of partial results (LSE merge, dK/dV sums), far below this.
    constexpr double kTolFp32 = 1e-5;
    res.checks.push_back(compare_with_reference("out", out, ref_out, kTolFp32));
    res.checks.push_back(compare_with_reference("lse", lse, ref_lse, kTolFp32));
    if (have_bwd) {
      std::vector<float> rdq(S * q_row), rdk(S * kv_row), rdv(S * kv_row);
      kernels::cpu::attention_backward(shape, slices.data(), slices.size(), q.data(), k.data(),
                                       v.data(), ref_out.data(), dout.data(), ref_lse.data(), scale,
                                       rdq.data(), rdk.data(), rdv.data(), ref_threads);
      res.checks.push_back(compare_with_reference("dq", dq, rdq, kTolFp32));
      res.checks.push_back(compare_with_reference("dk", dk, rdk, kTolFp32));
      res.checks.push_back(compare_with_reference("dv", dv, rdv, kTolFp32));
    }
    for (const TensorError& c : res.checks) passed &= c.ok ? 1 : 0;
  }
  // Rank 0's verdict to everyone, without spinning the others while it computes.
  if (r == 0) {
    std::vector<P2POp> sends;
    for (int p = 1; p < comm.size(); ++p) sends.push_back({p, &passed, sizeof passed});
    comm.group(sends, {});
  } else {
    auto req = comm.group_start({}, {{0, &passed, sizeof passed}});
    wait_sleepy(comm, req.get(), "the check's verdict from rank 0");
  }
  res.check_passed = passed != 0;
  return res;
}

}  // namespace magi
