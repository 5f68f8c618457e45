// Pre-tokenizers of byte-level BPE vocabularies: the regular expressions each model family's
// tokenizer.json splits text with, implemented by hand (one matcher per pattern, same
// leftmost-first alternation and backtracking results). Names are those of tokenizer.ggml.pre.
#pragma once

#include <string_view>
#include <vector>

namespace moeserve::tokenizer {

enum class PreTokenizer {
  Qwen2,        // "qwen2": digits one at a time
  Llama3,       // "llama-bpe", "llama3": as qwen2, digits in groups of up to three
  Gpt4o,        // "gpt-4o": o200k, case-aware letter runs
  DeepseekLlm,  // "deepseek-llm": six patterns applied in sequence
  DeepseekV3,   // "deepseek-v3": three patterns applied in sequence
};

// Throws moeserve::Error naming `source` and the known names when `name` is unsupported.
PreTokenizer pre_tokenizer_from_name(std::string_view name, std::string_view source);
const char* pre_tokenizer_name(PreTokenizer kind);  // canonical GGUF name

// Splits `text` into pieces (views into it) that together cover every byte exactly once, in
// order. Bytes that are not valid UTF-8 count as characters of no class.
void pre_tokenize(PreTokenizer kind, std::string_view text, std::vector<std::string_view>& pieces);

}  // namespace moeserve::tokenizer
