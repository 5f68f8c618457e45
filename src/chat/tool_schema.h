// The tools of a request as the output parsers need them: for each function name, the JSON schema
// of its parameters (which drives Qwen3-Coder value conversion and which `<parameter=NAME>` tags
// count as structure).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace moeserve::chat {

struct ToolSchema {
  std::string name;
  nlohmann::json properties = nlohmann::json::object();  // parameters.properties, possibly empty

  // vLLM treats a tool without declared properties like an unknown one when it decides which
  // nested tags are structural; so do we.
  bool has_properties() const { return !properties.empty(); }
  bool has_param(std::string_view param) const;
  // True when `partial` could still grow into a declared parameter name.
  bool param_name_prefix(std::string_view partial) const;
  const nlohmann::json* param_schema(std::string_view param) const;
};

class ToolSet {
 public:
  ToolSet() = default;
  // OpenAI `tools`: [{"type": "function", "function": {"name", "parameters"}}], also accepting
  // entries that are the function object itself. Fails (moeserve::Error) naming the bad entry.
  static ToolSet from_openai(const nlohmann::json& tools);

  void add(ToolSchema tool) { tools_.push_back(std::move(tool)); }
  const ToolSchema* find(std::string_view name) const;
  bool empty() const { return tools_.empty(); }

 private:
  std::vector<ToolSchema> tools_;
};

}  // namespace moeserve::chat
