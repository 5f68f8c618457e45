// Tokenizer reproducing jinja2's lexer under transformers' settings (trim_blocks, lstrip_blocks):
// newlines are normalized and one trailing newline dropped, `{%- -%}`/`{{- -}}`/`{#- -#}` strip
// whitespace, `+` opts out, raw blocks pass through, and end tags inside brackets do not count.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace moeserve::jinja {

enum class TokenType : uint8_t {
  Data,
  VariableBegin,
  VariableEnd,
  BlockBegin,
  BlockEnd,
  Name,
  String,
  Integer,
  Float,
  Operator,
  Eof,
};

struct Token {
  TokenType type = TokenType::Eof;
  std::string value;  // data text, name, decoded string literal, operator
  int64_t int_value = 0;
  double float_value = 0.0;
  int line = 1;
  int column = 1;
};

// Throws TemplateError on lexical errors (unterminated comments, strings, stray characters).
std::vector<Token> tokenize(std::string_view source);

}  // namespace moeserve::jinja
