#include "chat/hermes_json.h"

#include "chat/py_parse.h"
#include "chat/py_value.h"
#include "chat/tag_match.h"

namespace moeserve::chat {
namespace {

JsonCallResult malformed(size_t end, std::string problem) {
  JsonCallResult r;
  r.end = end;
  r.problem = std::move(problem);
  return r;
}

const PyValue* member(const PyValue& dict, std::string_view key) {
  for (const auto& [k, v] : dict.entries)
    if (k.is_string() && k.text == key) return &v;
  return nullptr;
}

}  // namespace

JsonCallResult HermesCallBody::decode(std::string_view value) const {
  const std::optional<PyValue> v = py_json_loads(value);
  if (!v) return malformed(value.size(), "tool call is not valid JSON");
  if (v->kind != PyValue::Kind::dict) return malformed(value.size(), "tool call JSON is not an object");
  const PyValue* name = member(*v, "name");
  if (!name || !name->is_string() || name->text.empty())
    return malformed(value.size(), "tool call JSON has no \"name\" string");
  const PyValue* args = member(*v, "arguments");
  if (!args) args = member(*v, "parameters");
  PyValue decoded;
  if (args && args->is_string()) {  // arguments encoded twice, as OpenAI's wire format does
    std::optional<PyValue> inner = py_json_loads(args->text);
    if (!inner) return malformed(value.size(), "tool call \"arguments\" string is not JSON");
    decoded = std::move(*inner);
    args = &decoded;
  }
  if (args && args->kind != PyValue::Kind::dict) return malformed(value.size(), "tool call \"arguments\" is not an object");
  if (args && !py_json_serializable(*args))
    return malformed(value.size(), "tool call \"arguments\" holds NaN or Infinity");
  JsonCallResult r;
  r.ok = true;
  r.end = value.size();
  r.name = name->text;
  r.arguments = args ? py_json_dumps(*args) : "{}";
  return r;
}

std::optional<JsonCallResult> HermesCallBody::advance(std::string_view s, bool final) {
  for (; pos_ < s.size(); ++pos_) {
    const char c = s[pos_];
    if (in_string_) {
      if (escape_) escape_ = false;
      else if (c == '\\') escape_ = true;
      else if (c == '"') in_string_ = false;
      continue;
    }
    switch (c) {
      case '"':
        in_string_ = true;
        break;
      case '{':
      case '[':
        ++depth_;
        break;
      case '}':
      case ']':
        if (--depth_ == 0) return decode(s.substr(0, pos_ + 1));
        break;
      case '<': {
        // A `</tool_call>` outside strings before the value closed: the JSON is cut short.
        const TagMatch m = match_tag(s, pos_, kToolCallClose);
        if (m == TagMatch::full) return malformed(pos_ + kToolCallClose.size(), "tool call JSON is incomplete");
        if (m == TagMatch::partial && !final) return std::nullopt;
        break;
      }
      default:
        break;
    }
  }
  if (!final) return std::nullopt;
  return malformed(s.size(), "the output ended inside a tool call");
}

}  // namespace moeserve::chat
