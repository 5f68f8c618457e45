#include "chat/tool_schema.h"

#include "core/error.h"

namespace moeserve::chat {

bool ToolSchema::has_param(std::string_view param) const { return param_schema(param) != nullptr; }

bool ToolSchema::param_name_prefix(std::string_view partial) const {
  for (const auto& item : properties.items())
    if (std::string_view(item.key()).substr(0, partial.size()) == partial) return true;
  return false;
}

const nlohmann::json* ToolSchema::param_schema(std::string_view param) const {
  const auto it = properties.find(std::string(param));
  return it == properties.end() ? nullptr : &*it;
}

ToolSet ToolSet::from_openai(const nlohmann::json& tools) {
  ToolSet set;
  if (tools.is_null()) return set;
  if (!tools.is_array()) fail("tools: expected an array of tool definitions");
  for (size_t i = 0; i < tools.size(); ++i) {
    const nlohmann::json& entry = tools[i];
    if (!entry.is_object()) fail("tools[", i, "]: expected an object");
    const bool wrapped = entry.contains("function");
    const nlohmann::json& fn = wrapped ? entry["function"] : entry;
    const std::string where = wrapped ? str_cat("tools[", i, "].function") : str_cat("tools[", i, "]");
    if (!fn.is_object()) fail(where, ": expected an object");
    const auto name = fn.find("name");
    if (name == fn.end() || !name->is_string() || name->get<std::string>().empty())
      fail(where, ".name: expected a non-empty string");
    ToolSchema tool;
    tool.name = name->get<std::string>();
    const auto params = fn.find("parameters");
    if (params != fn.end() && !params->is_null()) {
      if (!params->is_object()) fail(where, ".parameters: expected a JSON schema object");
      const auto props = params->find("properties");
      if (props != params->end() && !props->is_null()) {
        if (!props->is_object()) fail(where, ".parameters.properties: expected an object");
        tool.properties = *props;
      }
    }
    set.add(std::move(tool));
  }
  return set;
}

const ToolSchema* ToolSet::find(std::string_view name) const {
  for (const ToolSchema& t : tools_)
    if (t.name == name) return &t;
  return nullptr;
}

}  // namespace moeserve::chat
