// The KL-divergence statistics of `moeserve perplexity --kl-divergence` against exact values
// computed here in double from the same logits: saved rows decode to the log-softmax within the
// 16-bit step, the divergence and probability differences match their definitions, and the base
// file's header is llama-perplexity's layout.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <regex>
#include <sstream>
#include <vector>

#include "core/error.h"
#include "ops_test_util.h"
#include "runtime/kl_divergence.h"

namespace moeserve::kld {
namespace {

std::vector<double> log_softmax(const std::vector<float>& logits) {
  return test::log_softmax(logits.data(), int64_t(logits.size()));
}

std::vector<float> random_logits(std::mt19937& gen, int64_t n, float spread) {
  std::normal_distribution<float> d(0.0f, spread);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = d(gen);
  return v;
}

float row_float(const std::vector<uint16_t>& row, int at) {
  float f;
  std::memcpy(&f, row.data() + at, sizeof f);
  return f;
}

TEST(KlDivergence, SavedRowsDecodeToTheLogSoftmax) {
  std::mt19937 gen(5);
  const int64_t n_vocab = 1001;  // odd: one padding word
  for (float spread : {0.5f, 3.0f, 8.0f}) {
    const std::vector<float> logits = random_logits(gen, n_vocab, spread);
    std::vector<uint16_t> row(size_t(row_words(n_vocab)), 0xFFFF);
    const double nll = encode_row(logits.data(), n_vocab, 17, row.data());
    const std::vector<double> exact = log_softmax(logits);
    EXPECT_NEAR(nll, -exact[17], 1e-4);
    const float scale = row_float(row, 0), min_log_prob = row_float(row, 2);
    double max_exact = -1e30;
    for (double v : exact) max_exact = std::max(max_exact, v);
    for (int64_t i = 0; i < n_vocab; ++i) {
      const double decoded = double(scale) * row[size_t(4 + i)] + min_log_prob;
      if (exact[size_t(i)] > max_exact - 16) {
        EXPECT_NEAR(decoded, exact[size_t(i)], 0.5 * scale + 1e-4) << i;
      } else {
        EXPECT_NEAR(decoded, max_exact - 16, 1e-3) << i;  // below the range: its floor
      }
    }
    EXPECT_EQ(row.back(), 0);  // the padding word
  }
}

TEST(KlDivergence, StatisticsFollowTheirDefinitions) {
  std::mt19937 gen(9);
  const int64_t n_vocab = 257, positions = 150;
  const int64_t words = row_words(n_vocab);
  Stats stats;
  double exact_kld = 0, exact_p_diff = 0;
  int64_t same_top = 0;
  for (int64_t pos = 0; pos < positions; ++pos) {
    const std::vector<float> base = random_logits(gen, n_vocab, 2.0f);
    std::vector<float> q = base;
    std::normal_distribution<float> noise(0.0f, pos % 3 == 0 ? 1.0f : 0.05f);
    for (float& v : q) v += noise(gen);
    const int32_t target = int32_t(gen() % uint32_t(n_vocab));
    std::vector<uint16_t> row(static_cast<size_t>(words));
    encode_row(base.data(), n_vocab, target, row.data());
    const double kld = stats.add(q.data(), n_vocab, row.data(), target);

    const std::vector<double> lp = log_softmax(base), lq = log_softmax(q);
    double want = 0;
    for (int64_t i = 0; i < n_vocab; ++i) want += std::exp(lp[size_t(i)]) * (lp[size_t(i)] - lq[size_t(i)]);
    EXPECT_NEAR(kld, want, 2e-3 + 0.01 * want) << pos;
    exact_kld += want;
    exact_p_diff += std::exp(lq[size_t(target)]) - std::exp(lp[size_t(target)]);
    const auto argmax = [](const std::vector<float>& v) { return std::max_element(v.begin(), v.end()) - v.begin(); };
    same_top += argmax(base) == argmax(q);
  }
  EXPECT_EQ(stats.count(), positions);
  const std::string s = stats.summary();
  auto value_of = [&](const std::string& label) {
    const size_t at = s.find(label);
    EXPECT_NE(at, std::string::npos) << label << "\n" << s;
    return at == std::string::npos ? 0.0 : std::stod(s.substr(at + label.size()));
  };
  EXPECT_NEAR(value_of("Mean    KLD:"), exact_kld / positions, 2e-3);
  EXPECT_NEAR(value_of("Mean    Δp:"), 100.0 * exact_p_diff / positions, 0.05);
  EXPECT_NEAR(value_of("Same top p:"), 100.0 * double(same_top) / positions, 1e-3);
  // llama-perplexity's lines, as parsers of its output read them.
  for (const char* line : {R"(\nMean PPL\(Q\)                   : +\d+\.\d{6} ± +\d+\.\d{6}\n)",
                           R"(\nCor\(ln\(PPL\(Q\)\), ln\(PPL\(base\)\)\): +\d+\.\d{2}%\n)",
                           R"(\nMean    KLD: +-?\d+\.\d{6} ± +\d+\.\d{6}\n)", R"(\n99\.9%   KLD: +-?\d+\.\d{6}\n)",
                           R"(\nMedian  KLD: +-?\d+\.\d{6}\n)", R"(\n 0\.1%   KLD: +-?\d+\.\d{6}\n)",
                           R"(\nRMS Δp    : +\d+\.\d{3} ± +\d+\.\d{3} %\n)", R"(\nSame top p: +\d+\.\d{3} ± +\d+\.\d{3} %\n)"}) {
    EXPECT_TRUE(std::regex_search("\n" + s, std::regex(line))) << line << "\n" << s;
  }
  EXPECT_TRUE(std::regex_match(stats.chunk_row(3), std::regex(R"(   3 +\d+\.\d{4} ± +\d+\.\d{4} +-?\d+\.\d{5} ± +\d+\.\d{5})"
                                                               R"( +-?\d+\.\d{5} ± +\d+\.\d{5} +\d+\.\d{3} ± +\d+\.\d{3} %)"
                                                               R"( +\d+\.\d{3} ± +\d+\.\d{3} %\n)")))
      << stats.chunk_row(3);
}

TEST(KlDivergence, HeaderIsLlamaPerplexitysLayout) {
  BaseHeader h{8, 50, 2, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}};
  std::stringstream file;
  write_header(file, h);
  const std::string bytes = file.str();
  ASSERT_EQ(bytes.size(), 8u + 3 * 4 + 16 * 4);
  EXPECT_EQ(bytes.substr(0, 8), "_logits_");
  int32_t ints[3];
  std::memcpy(ints, bytes.data() + 8, sizeof ints);
  EXPECT_EQ(ints[0], 8);   // n_ctx
  EXPECT_EQ(ints[1], 50);  // n_vocab
  EXPECT_EQ(ints[2], 2);   // n_chunk
  const BaseHeader back = read_header(file, "base.kld");
  EXPECT_EQ(back.tokens, h.tokens);

  auto error_of = [](const std::string& data) {
    std::stringstream in(data);
    try {
      read_header(in, "base.kld");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(error_of("GGUF...."), "base.kld: not a file of base log-probabilities (it does not start with \"_logits_\")");
  EXPECT_EQ(error_of(bytes.substr(0, 14)), "base.kld: cut short in its header");
  EXPECT_EQ(error_of(bytes.substr(0, 40)), "base.kld: cut short in its 16 evaluation tokens");
  std::string bad = bytes;
  const int32_t outside = 50;
  std::memcpy(bad.data() + 20, &outside, 4);
  EXPECT_EQ(error_of(bad), "base.kld: token id 50 is outside its vocabulary of 50");
}

}  // namespace
}  // namespace moeserve::kld
