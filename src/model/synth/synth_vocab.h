// A well-formed byte-level BPE vocabulary of a given size for synthetic models: the 256 byte
// tokens, merges that each join two existing tokens into a new one, the real special tokens of
// the family (Qwen: <|endoftext|> ... </think>; Llama 3: <|begin_of_text|> ... ) and [PAD<id>]
// fillers, as GGUF tokenizer.* keys (shared/spec/gguf.md §5).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "gguf/gguf_value.h"
#include "model/synth/presets.h"

namespace moeserve::synth {

std::vector<std::pair<std::string, gguf::Value>> synthetic_vocab(VocabStyle style, int64_t n_normal, int64_t n_vocab,
                                                                 uint64_t seed);

}  // namespace moeserve::synth
