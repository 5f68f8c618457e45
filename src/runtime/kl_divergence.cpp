#include "runtime/kl_divergence.h"

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <utility>

#include "core/error.h"

// The arithmetic follows llama-perplexity's (tools/perplexity): floats where it uses floats, its
// sums in double, its uncertainty formulas and its percentiles, so that the same logits give the
// same printed figures.
namespace moeserve::kld {
namespace {

constexpr char kMagic[8] = {'_', 'l', 'o', 'g', 'i', 't', 's', '_'};

std::string format(const char* fmt, ...) {
  char buf[256];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, args);
  va_end(args);
  return buf;
}

// Mean of n values from their sum and sum of squares, and its standard error (0 below 11 values).
std::pair<double, double> mean_and_uncertainty(double sum, double sum2, int64_t count) {
  if (count < 1) return {0.0, 0.0};
  const double f = sum / double(count);
  double df = sum2 / double(count) - f * f;
  df = df > 0 && count > 10 ? std::sqrt(df / double(count - 1)) : 0.0;
  return {f, df};
}

// Covariance of the two means (0 below 10 values).
double covariance(double suma, double sumb, double sumab, int64_t count) {
  if (count < 10) return 0.0;
  const double n = double(count);
  return (sumab / n - (suma / n) * (sumb / n)) / (n - 1);
}

// The value at `fraction` of the sorted values, interpolated between neighbours.
float percentile(const std::vector<float>& sorted, float fraction) {
  if (fraction <= 0) return sorted.front();
  if (fraction >= 1) return sorted.back();
  float p = fraction * float(sorted.size() - 1);
  const size_t ip = size_t(p);
  p -= float(ip);
  return (1 - p) * sorted[ip] + p * sorted[std::min(ip + 1, sorted.size() - 1)];
}

float median(const std::vector<float>& sorted) {
  const size_t n = sorted.size();
  return n % 2 == 0 ? 0.5f * (sorted[n / 2] + sorted[n / 2 - 1]) : sorted[n / 2];
}

template <typename T>
void put(std::ostream& out, const T& v) {
  out.write(reinterpret_cast<const char*>(&v), sizeof v);
}

}  // namespace

double encode_row(const float* logits, int64_t n_vocab, int32_t target, uint16_t* row) {
  float max_logit = logits[0], min_logit = logits[0];
  for (int64_t i = 1; i < n_vocab; ++i) {
    max_logit = std::max(max_logit, logits[i]);
    min_logit = std::min(min_logit, logits[i]);
  }
  min_logit = std::max(min_logit, max_logit - 16);
  double sum_exp = 0.0;
  for (int64_t i = 0; i < n_vocab; ++i) sum_exp += std::exp(logits[i] - max_logit);
  const float log_sum_exp = float(std::log(sum_exp));
  const float min_log_prob = min_logit - max_logit - log_sum_exp;
  const float scale = (max_logit - min_logit) / 65535.f;
  std::memcpy(row, &scale, sizeof scale);
  std::memcpy(row + 2, &min_log_prob, sizeof min_log_prob);
  uint16_t* steps = row + 4;
  std::memset(steps, 0, size_t(row_words(n_vocab) - 4) * sizeof(uint16_t));
  if (scale != 0) {
    const float inv_scale = 1 / scale;
    for (int64_t i = 0; i < n_vocab; ++i) {
      if (logits[i] > min_logit) steps[i] = uint16_t(std::nearbyint(inv_scale * (logits[i] - min_logit)));
    }
  }
  return max_logit + log_sum_exp - logits[target];
}

void write_header(std::ostream& out, const BaseHeader& h) {
  out.write(kMagic, sizeof kMagic);
  put(out, h.n_ctx);
  put(out, h.n_vocab);
  put(out, h.n_chunk);
  out.write(reinterpret_cast<const char*>(h.tokens.data()), std::streamsize(h.tokens.size() * sizeof(int32_t)));
}

BaseHeader read_header(std::istream& in, const std::string& path) {
  char magic[sizeof kMagic];
  if (!in.read(magic, sizeof magic) || std::memcmp(magic, kMagic, sizeof magic) != 0) {
    fail(path, ": not a file of base log-probabilities (it does not start with \"_logits_\")");
  }
  BaseHeader h;
  in.read(reinterpret_cast<char*>(&h.n_ctx), sizeof h.n_ctx);
  in.read(reinterpret_cast<char*>(&h.n_vocab), sizeof h.n_vocab);
  in.read(reinterpret_cast<char*>(&h.n_chunk), sizeof h.n_chunk);
  if (!in) fail(path, ": cut short in its header");
  if (h.n_ctx < 4 || h.n_vocab < 1 || h.n_chunk < 1 || int64_t(h.n_ctx) * h.n_chunk > (int64_t(1) << 31)) {
    fail(path, ": implausible header (n_ctx ", h.n_ctx, ", n_vocab ", h.n_vocab, ", n_chunk ", h.n_chunk, ")");
  }
  h.tokens.resize(size_t(h.n_ctx) * size_t(h.n_chunk));
  if (!in.read(reinterpret_cast<char*>(h.tokens.data()), std::streamsize(h.tokens.size() * sizeof(int32_t)))) {
    fail(path, ": cut short in its ", h.tokens.size(), " evaluation tokens");
  }
  for (int32_t t : h.tokens) {
    if (t < 0 || t >= h.n_vocab) fail(path, ": token id ", t, " is outside its vocabulary of ", h.n_vocab);
  }
  return h;
}

Stats::Position Stats::measure(const float* logits, int64_t n_vocab, const uint16_t* base_row, int32_t target) {
  float max_logit = logits[0];
  int64_t imax = 0;
  for (int64_t i = 1; i < n_vocab; ++i) {
    if (logits[i] > max_logit) {
      max_logit = logits[i];
      imax = i;
    }
  }
  double sum_exp = 0.0;
  for (int64_t i = 0; i < n_vocab; ++i) sum_exp += std::exp(logits[i] - max_logit);
  const float log_sum_exp = float(std::log(sum_exp));
  float scale = 0, min_log_prob = 0;
  std::memcpy(&scale, base_row, sizeof scale);
  std::memcpy(&min_log_prob, base_row + 2, sizeof min_log_prob);
  const uint16_t* steps = base_row + 4;

  Position p;
  p.nll = max_logit + log_sum_exp - logits[target];
  p.nll_base = -(scale * float(steps[target]) + min_log_prob);
  max_logit += log_sum_exp;  // log-softmax of i: logits[i] - max_logit
  p.kld = 0;
  int64_t imax_base = -1;
  float p_log_base_max = 0;
  for (int64_t i = 0; i < n_vocab; ++i) {
    const float p_log_base = scale * float(steps[i]) + min_log_prob;
    if (i == 0 || p_log_base > p_log_base_max) {
      p_log_base_max = p_log_base;
      imax_base = i;
    }
    if (p_log_base > -16.f) {
      const float p_base = std::exp(p_log_base);
      p.kld += p_base * (p_log_base - logits[i] + max_logit);
    }
  }
  p.same_top = imax == imax_base;
  p.p_diff = std::exp(-p.nll) - std::exp(-p.nll_base);
  return p;
}

void Stats::add(const Position& p) {
  sum_nll_ += p.nll;
  sum_nll2_ += p.nll * p.nll;
  sum_nll_base_ += p.nll_base;
  sum_nll_base2_ += p.nll_base * p.nll_base;
  sum_nll_nll_base_ += p.nll * p.nll_base;
  sum_kld_ += p.kld;
  sum_kld2_ += p.kld * p.kld;
  ++count_;
  if (p.same_top) ++n_same_top_;
  sum_p_diff_ += p.p_diff;
  const double p_diff2 = p.p_diff * p.p_diff;
  sum_p_diff2_ += p_diff2;
  sum_p_diff4_ += p_diff2 * p_diff2;
  kld_values_.push_back(float(p.kld));
  p_diff_values_.push_back(p.p_diff);
}

std::string Stats::table_header() {
  return "chunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence              Δp RMS"
         "            Same top p\n";
}

std::string Stats::chunk_row(int64_t chunk) const {
  const auto log_ppl = mean_and_uncertainty(sum_nll_, sum_nll2_, count_);
  const double ppl = std::exp(log_ppl.first);
  const auto log_ppl_base = mean_and_uncertainty(sum_nll_base_, sum_nll_base2_, count_);
  const double cov = covariance(sum_nll_, sum_nll_base_, sum_nll_nll_base_, count_);
  const double ratio_unc = std::sqrt(log_ppl.second * log_ppl.second + log_ppl_base.second * log_ppl_base.second - 2.0 * cov);
  const auto kl = mean_and_uncertainty(sum_kld_, sum_kld2_, count_);
  const auto mse = mean_and_uncertainty(sum_p_diff2_, sum_p_diff4_, count_);
  const double rms = std::sqrt(mse.first), rms_unc = 0.5 / rms * mse.second;
  const double top = double(n_same_top_) / double(count_), top_unc = std::sqrt(top * (1 - top) / double(count_ - 1));
  return format("%4lld", (long long)chunk) + format("    %9.4lf ± %9.4lf", ppl, ppl * log_ppl.second) +
         format("    %10.5lf ± %10.5lf", log_ppl.first - log_ppl_base.first, ratio_unc) +
         format("    %10.5lf ± %10.5lf", kl.first, kl.second) +
         format("    %6.3lf ± %6.3lf %%", 100.0 * rms, 100.0 * rms_unc) +
         format("    %6.3lf ± %6.3lf %%", 100.0 * top, 100.0 * top_unc) + "\n";
}

std::string Stats::summary() const {
  std::vector<float> klds = kld_values_, p_diffs = p_diff_values_;
  std::sort(klds.begin(), klds.end());
  std::sort(p_diffs.begin(), p_diffs.end());
  std::string s = "====== Perplexity statistics ======\n";
  const auto log_ppl = mean_and_uncertainty(sum_nll_, sum_nll2_, count_);
  const double ppl = std::exp(log_ppl.first), ppl_unc = ppl * log_ppl.second;
  s += format("Mean PPL(Q)                   : %10.6lf ± %10.6lf\n", ppl, ppl_unc);
  const auto log_base = mean_and_uncertainty(sum_nll_base_, sum_nll_base2_, count_);
  const double base = std::exp(log_base.first), base_unc = base * log_base.second;
  s += format("Mean PPL(base)                : %10.6lf ± %10.6lf\n", base, base_unc);
  const double cov = covariance(sum_nll_, sum_nll_base_, sum_nll_nll_base_, count_);
  s += format("Cor(ln(PPL(Q)), ln(PPL(base))): %6.2lf%%\n", 100.0 * cov / (log_ppl.second * log_base.second));
  const double ratio = log_ppl.first - log_base.first;
  const double ratio_unc = std::sqrt(log_ppl.second * log_ppl.second + log_base.second * log_base.second - 2.0 * cov);
  s += format("Mean ln(PPL(Q)/PPL(base))     : %10.6lf ± %10.6lf\n", ratio, ratio_unc);
  s += format("Mean PPL(Q)/PPL(base)         : %10.6lf ± %10.6lf\n", std::exp(ratio), std::exp(ratio) * ratio_unc);
  const double ppl_cov = ppl * base * cov;
  s += format("Mean PPL(Q)-PPL(base)         : %10.6lf ± %10.6lf\n", ppl - base,
              std::sqrt(ppl_unc * ppl_unc + base_unc * base_unc - 2.0 * ppl_cov));

  s += "\n====== KL divergence statistics ======\n";
  const auto kl = mean_and_uncertainty(sum_kld_, sum_kld2_, count_);
  s += format("Mean    KLD: %10.6lf ± %10.6lf\n", kl.first, kl.second);
  s += format("Maximum KLD: %10.6f\n", klds.back());
  for (const auto& [label, f] : {std::pair{"99.9%", 0.999f}, {"99.0%", 0.990f}, {"95.0%", 0.950f}, {"90.0%", 0.900f}}) {
    s += format("%s   KLD: %10.6f\n", label, percentile(klds, f));
  }
  s += format("Median  KLD: %10.6f\n", median(klds));
  for (const auto& [label, f] : {std::pair{"10.0%", 0.100f}, {" 5.0%", 0.050f}, {" 1.0%", 0.010f}, {" 0.1%", 0.001f}}) {
    s += format("%s   KLD: %10.6f\n", label, percentile(klds, f));
  }
  s += format("Minimum KLD: %10.6f\n", klds.front());

  s += "\n====== Token probability statistics ======\n";
  const auto p_diff = mean_and_uncertainty(sum_p_diff_, sum_p_diff2_, count_);
  s += format("Mean    Δp: %6.3lf ± %5.3lf %%\n", 100.0 * p_diff.first, 100.0 * p_diff.second);
  s += format("Maximum Δp: %6.3lf%%\n", 100.0 * p_diffs.back());
  for (const auto& [label, f] : {std::pair{"99.9%", 0.999f}, {"99.0%", 0.990f}, {"95.0%", 0.950f}, {"90.0%", 0.900f},
                                 {"75.0%", 0.750f}}) {
    s += format("%s   Δp: %6.3lf%%\n", label, 100.0 * percentile(p_diffs, f));
  }
  s += format("Median  Δp: %6.3lf%%\n", 100.0 * median(p_diffs));
  for (const auto& [label, f] : {std::pair{"25.0%", 0.250f}, {"10.0%", 0.100f}, {" 5.0%", 0.050f}, {" 1.0%", 0.010f},
                                 {" 0.1%", 0.001f}}) {
    s += format("%s   Δp: %6.3lf%%\n", label, 100.0 * percentile(p_diffs, f));
  }
  s += format("Minimum Δp: %6.3lf%%\n", 100.0 * p_diffs.front());
  const auto mse = mean_and_uncertainty(sum_p_diff2_, sum_p_diff4_, count_);
  const double rms = std::sqrt(mse.first);
  s += format("RMS Δp    : %6.3lf ± %5.3lf %%\n", 100.0 * rms, 100.0 * (0.5 / rms * mse.second));
  const double top = double(n_same_top_) / double(count_);
  s += format("Same top p: %6.3lf ± %5.3lf %%\n", 100.0 * top, 100.0 * std::sqrt(top * (1.0 - top) / double(count_ - 1)));
  return s;
}

}  // namespace moeserve::kld
