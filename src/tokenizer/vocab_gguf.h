// A Vocab from and to GGUF metadata (the tokenizer.ggml.* keys of shared/spec/gguf.md §5).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "gguf/gguf_file.h"
#include "gguf/gguf_value.h"
#include "tokenizer/vocab.h"

namespace moeserve::tokenizer {

// Throws moeserve::Error naming the file and key when a key is missing, mistyped or inconsistent.
Vocab vocab_from_gguf(const gguf::GgufFile& file);

// The tokenizer.ggml.* keys for `vocab`, as a converter writes them (special ids only when set,
// scores only when present, add_space_prefix for llama vocabularies).
std::vector<std::pair<std::string, gguf::Value>> vocab_to_gguf_metadata(const Vocab& vocab);

}  // namespace moeserve::tokenizer
