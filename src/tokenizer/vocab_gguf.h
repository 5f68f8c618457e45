// A Vocab from GGUF metadata (the tokenizer.ggml.* keys of shared/spec/gguf.md §5).
#pragma once

#include "gguf/gguf_file.h"
#include "tokenizer/vocab.h"

namespace moeserve::tokenizer {

// Throws moeserve::Error naming the file and key when a key is missing, mistyped or inconsistent.
Vocab vocab_from_gguf(const gguf::GgufFile& file);

}  // namespace moeserve::tokenizer
