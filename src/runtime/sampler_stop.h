// Stop strings for streamed generation: text is released as soon as it cannot be the start of a
// stop string; a stop string is found even when it spans several tokens. On a match the text
// before it is released, the stop string and anything after it are not (OpenAI `stop` semantics),
// and generation should end.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace moeserve {

class StopStringMatcher {
 public:
  // Empty stop strings are rejected (moeserve::Error): they would match before any text.
  explicit StopStringMatcher(std::vector<std::string> stops);

  struct Result {
    std::string text;     // safe to send now
    int matched = -1;     // index into the stop strings when one matched (generation is over)
  };

  // Adds the next piece of generated text. After a match, further text is ignored.
  Result feed(std::string_view text);
  // Generation ended without a match: the text still held back.
  std::string finish();

  bool stopped() const { return stopped_; }
  const std::vector<std::string>& stops() const { return stops_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace moeserve
