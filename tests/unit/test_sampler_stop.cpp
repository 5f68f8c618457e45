// Stop strings across token boundaries: for every chunking, the released text and the reported
// stop match a brute-force reading that looks at the text one byte at a time and stops at the
// first byte where any stop string ends.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "runtime/sampler_stop.h"

namespace moeserve {
namespace {

struct Outcome {
  std::string text;
  int matched = -1;
  bool operator==(const Outcome&) const = default;
};

Outcome run(const std::vector<std::string>& stops, const std::vector<std::string_view>& chunks) {
  StopStringMatcher m(stops);
  Outcome o;
  for (std::string_view c : chunks) {
    const StopStringMatcher::Result r = m.feed(c);
    o.text += r.text;
    if (r.matched >= 0) {
      o.matched = r.matched;
      EXPECT_TRUE(m.stopped());
    }
  }
  if (o.matched < 0) o.text += m.finish();
  return o;
}

// The first byte position at which some stop string has just been completed; the longest one
// completed there is the match.
Outcome brute_force(const std::vector<std::string>& stops, std::string_view text) {
  for (size_t end = 1; end <= text.size(); ++end) {
    int best = -1;
    for (size_t i = 0; i < stops.size(); ++i) {
      const std::string& s = stops[i];
      if (s.size() <= end && text.substr(end - s.size(), s.size()) == s && (best < 0 || s.size() > stops[size_t(best)].size()))
        best = int(i);
    }
    if (best >= 0) return {std::string(text.substr(0, end - stops[size_t(best)].size())), best};
  }
  return {std::string(text), -1};
}

TEST(StopStrings, MatchAcrossEveryChunkBoundary) {
  const std::vector<std::string> stops = {"STOP", "\n\nUser:"};
  const std::string text = "Hello there\n\nUser: STOP and more";
  for (size_t a = 0; a <= text.size(); ++a) {
    for (size_t b = a; b <= text.size(); ++b) {
      const std::string_view t = text;
      ASSERT_EQ(run(stops, {t.substr(0, a), t.substr(a, b - a), t.substr(b)}), (Outcome{"Hello there", 1}))
          << a << " " << b;
    }
  }
}

TEST(StopStrings, HoldsBackOnlyWhatCouldStartAStop) {
  StopStringMatcher m({"STOP"});
  EXPECT_EQ(m.feed("Hello ST").text, "Hello ");
  EXPECT_EQ(m.feed("AR").text, "STAR");
  EXPECT_EQ(m.feed("S").text, "");
  EXPECT_EQ(m.feed("x").text, "Sx");
  EXPECT_EQ(m.finish(), "");
}

TEST(StopStrings, FirstCompletedStopWins) {
  // "bc" completes (at byte 3) before "abcd" does (byte 4), whatever the chunking.
  const std::vector<std::string> stops = {"abcd", "bc"};
  EXPECT_EQ(run(stops, {"abcd"}), (Outcome{"a", 1}));
  EXPECT_EQ(run(stops, {"a", "b", "c", "d"}), (Outcome{"a", 1}));
}

TEST(StopStrings, NothingAfterTheStop) {
  StopStringMatcher m({"END"});
  const auto r = m.feed("doneEND tail");
  EXPECT_EQ(r.text, "done");
  EXPECT_EQ(r.matched, 0);
  EXPECT_EQ(m.feed("more").text, "");
  EXPECT_EQ(m.finish(), "");
}

TEST(StopStrings, EmptyStopIsRejected) { EXPECT_THROW(StopStringMatcher({"ok", ""}), Error); }

TEST(StopStrings, RandomTextsAndChunkingsAgreeWithBruteForce) {
  std::mt19937 rng(99);
  const std::vector<std::string> stops = {"abc", "cab", "bb", "\xC3\xA9\xC3\xA9"};
  const char* alphabet[] = {"a", "b", "c", "\xC3\xA9", "x"};
  for (int iter = 0; iter < 2000; ++iter) {
    std::string text;
    const int n = int(rng() % 30);
    for (int i = 0; i < n; ++i) text += alphabet[rng() % 5];
    std::vector<std::string_view> chunks;
    for (size_t i = 0; i < text.size();) {
      const size_t len = std::min(text.size() - i, size_t(1 + rng() % 5));
      chunks.push_back(std::string_view(text).substr(i, len));
      i += len;
    }
    ASSERT_EQ(run(stops, chunks), brute_force(stops, text)) << text;
  }
}

}  // namespace
}  // namespace moeserve
