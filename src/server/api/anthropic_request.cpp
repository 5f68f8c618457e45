// Parsing and validating Anthropic Messages requests into the internal ChatRequest.
#include "server/api/anthropic_api.h"
#include "server/api/json_fields.h"

namespace moeserve::server {
namespace {

std::string join_text(const std::vector<std::string>& parts) {
  std::string out;
  for (const std::string& p : parts) {
    if (!out.empty()) out += "\n\n";
    out += p;
  }
  return out;
}

// Text of a system prompt or tool result: a string or an array of blocks.
std::string block_text(const ordered_json& content, const std::string& path, bool drop_billing_header) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) bad_request(path, "'" + path + "' must be a string or an array of content blocks");
  std::vector<std::string> parts;
  for (size_t i = 0; i < content.size(); ++i) {
    const ordered_json& block = content[i];
    const std::string p = index_path(path, i);
    if (!block.is_object()) bad_request(p, "'" + p + "' must be an object");
    const std::string type = opt_string(block, "type", p).value_or("text");
    if (type == "text") {
      const auto text = opt_string(block, "text", p);
      if (!text) bad_request(field_path(p, "text"), "'" + field_path(p, "text") + "' is required");
      if (drop_billing_header && is_billing_header_block(*text)) continue;
      parts.push_back(*text);
    } else if (type == "image" || type == "document") {
      throw ApiError{400, "content block type '" + type + "' is not supported by this model (text only)",
                     "invalid_request_error", field_path(p, "type")};
    } else {
      bad_request(field_path(p, "type"), "unexpected content block type '" + type + "' in '" + p + "'");
    }
  }
  return join_text(parts);
}

void add_message(ChatRequest& r, const ordered_json& m, const std::string& path) {
  if (!m.is_object()) bad_request(path, "'" + path + "' must be an object");
  const auto role = opt_string(m, "role", path);
  if (!role) bad_request(field_path(path, "role"), "'" + field_path(path, "role") + "' is required");
  if (*role != "user" && *role != "assistant" && *role != "system") {
    bad_request(field_path(path, "role"), "'" + field_path(path, "role") + "' must be 'user' or 'assistant'");
  }
  const auto content_it = m.find("content");
  if (content_it == m.end() || content_it->is_null()) bad_request(field_path(path, "content"), "'" + field_path(path, "content") + "' is required");
  const std::string cpath = field_path(path, "content");
  if (*role == "system") {
    r.messages.push_back({{"role", "system"}, {"content", block_text(*content_it, cpath, true)}});
    return;
  }
  if (content_it->is_string()) {
    r.messages.push_back({{"role", *role}, {"content", content_it->get<std::string>()}});
    return;
  }
  if (!content_it->is_array()) bad_request(cpath, "'" + cpath + "' must be a string or an array of content blocks");

  std::vector<std::string> texts;
  std::string reasoning;
  ordered_json tool_calls = ordered_json::array();
  for (size_t i = 0; i < content_it->size(); ++i) {
    const ordered_json& block = (*content_it)[i];
    const std::string p = index_path(cpath, i);
    if (!block.is_object()) bad_request(p, "'" + p + "' must be an object");
    const auto type = opt_string(block, "type", p);
    if (!type) bad_request(field_path(p, "type"), "'" + field_path(p, "type") + "' is required");
    if (*type == "text") {
      const auto text = opt_string(block, "text", p);
      if (!text) bad_request(field_path(p, "text"), "'" + field_path(p, "text") + "' is required");
      texts.push_back(*text);
    } else if (*type == "tool_use" && *role == "assistant") {
      const auto id = opt_string(block, "id", p);
      const auto name = opt_string(block, "name", p);
      if (!id || !name) bad_request(p, "'" + p + "' needs 'id' and 'name'");
      const auto input = block.find("input");
      tool_calls.push_back({{"id", *id},
                            {"type", "function"},
                            {"function", {{"name", *name}, {"arguments", arguments_object(input == block.end() ? ordered_json() : *input, field_path(p, "input"))}}}});
    } else if (*type == "tool_result" && *role == "user") {
      const auto id = opt_string(block, "tool_use_id", p);
      if (!id) bad_request(field_path(p, "tool_use_id"), "'" + field_path(p, "tool_use_id") + "' is required");
      const auto result = block.find("content");
      std::string text = result == block.end() || result->is_null() ? "" : block_text(*result, field_path(p, "content"), false);
      // Tool results precede any text in a user turn; flush text gathered so far to keep order.
      if (!texts.empty()) {
        r.messages.push_back({{"role", "user"}, {"content", join_text(texts)}});
        texts.clear();
      }
      r.messages.push_back({{"role", "tool"}, {"tool_call_id", *id}, {"content", std::move(text)}});
    } else if (*type == "thinking" && *role == "assistant") {
      reasoning += opt_string(block, "thinking", p).value_or("");
    } else if (*type == "redacted_thinking" || *type == "server_tool_use" || *type == "web_search_tool_result") {
      // Opaque to this model: nothing in them can be rendered into its prompt.
    } else if (*type == "image" || *type == "document") {
      throw ApiError{400, "content block type '" + *type + "' is not supported by this model (text only)",
                     "invalid_request_error", field_path(p, "type")};
    } else {
      bad_request(field_path(p, "type"), "content block type '" + *type + "' is not valid in a " + *role + " message");
    }
  }
  if (*role == "user") {
    if (!texts.empty()) r.messages.push_back({{"role", "user"}, {"content", join_text(texts)}});
    return;
  }
  ordered_json msg = {{"role", "assistant"}, {"content", join_text(texts)}};
  if (!reasoning.empty()) msg["reasoning_content"] = reasoning;
  if (!tool_calls.empty()) msg["tool_calls"] = std::move(tool_calls);
  r.messages.push_back(std::move(msg));
}

void parse_tools(ChatRequest& r, const ordered_json& tools) {
  for (size_t i = 0; i < tools.size(); ++i) {
    const ordered_json& t = tools[i];
    const std::string p = index_path("tools", i);
    if (!t.is_object()) bad_request(p, "'" + p + "' must be an object");
    const std::string type = opt_string(t, "type", p).value_or("custom");
    const auto name = opt_string(t, "name", p);
    if (!name || name->empty()) bad_request(field_path(p, "name"), "'" + field_path(p, "name") + "' is required");
    const ordered_json* schema = opt_object(t, "input_schema", p);
    // Server-side tools (web search, code execution...) run at Anthropic, not in this model.
    if (type != "custom" && !schema) continue;
    if (!schema) bad_request(field_path(p, "input_schema"), "'" + field_path(p, "input_schema") + "' is required");
    ordered_json fn = {{"name", *name}};
    if (auto d = opt_string(t, "description", p)) fn["description"] = *d;
    fn["parameters"] = *schema;
    r.tools.push_back({{"type", "function"}, {"function", std::move(fn)}});
  }
}

}  // namespace

bool is_billing_header_block(const std::string& text) { return text.rfind("x-anthropic-billing-header:", 0) == 0; }

ChatRequest parse_anthropic_request(const ordered_json& body, bool for_count_tokens) {
  ChatRequest r;
  const auto model = opt_string(body, "model");
  if (!model && !for_count_tokens) bad_request("model", "'model' is required");
  r.model = model.value_or("");
  r.max_tokens = opt_integer(body, "max_tokens");
  if (!for_count_tokens) {
    if (!r.max_tokens) bad_request("max_tokens", "'max_tokens' is required");
    if (*r.max_tokens < 1) bad_request("max_tokens", "'max_tokens' must be at least 1");
  }
  if (const auto sys = body.find("system"); sys != body.end() && !sys->is_null()) {
    std::string text = block_text(*sys, "system", true);
    if (!text.empty()) r.messages.push_back({{"role", "system"}, {"content", std::move(text)}});
  }
  const ordered_json* messages = opt_array(body, "messages");
  if (!messages) bad_request("messages", "'messages' is required");
  for (size_t i = 0; i < messages->size(); ++i) add_message(r, (*messages)[i], index_path("messages", i));
  // Templates treat only a leading system message as the system prompt: merge system turns that
  // open the conversation (top-level `system` plus a system role inside `messages`).
  while (r.messages.size() >= 2 && r.messages[0]["role"] == "system" && r.messages[1]["role"] == "system") {
    r.messages[0]["content"] = r.messages[0]["content"].get<std::string>() + "\n\n" + r.messages[1]["content"].get<std::string>();
    r.messages.erase(r.messages.begin() + 1);
  }
  if (r.messages.empty() || (r.messages.size() == 1 && r.messages[0]["role"] == "system")) {
    bad_request("messages", "'messages' must hold at least one user message");
  }
  if (const ordered_json* tools = opt_array(body, "tools")) parse_tools(r, *tools);
  if (const ordered_json* choice = opt_object(body, "tool_choice")) {
    const std::string type = opt_string(*choice, "type", "tool_choice").value_or("auto");
    if (type == "auto") r.tool_choice = ToolChoice::auto_;
    else if (type == "any") r.tool_choice = ToolChoice::required;
    else if (type == "none") r.tool_choice = ToolChoice::none;
    else if (type == "tool") {
      const auto name = opt_string(*choice, "name", "tool_choice");
      if (!name) bad_request("tool_choice.name", "'tool_choice.name' is required");
      r.tool_choice = ToolChoice::named;
      r.tool_choice_name = *name;
    } else {
      bad_request("tool_choice.type", "'tool_choice.type' must be 'auto', 'any', 'tool' or 'none'");
    }
    if (opt_bool(*choice, "disable_parallel_tool_use", "tool_choice").value_or(false)) r.parallel_tool_calls = false;
  }
  if (const ordered_json* thinking = opt_object(body, "thinking")) {
    const std::string type = opt_string(*thinking, "type", "thinking").value_or("enabled");
    if (type == "enabled" || type == "adaptive") r.enable_thinking = true;
    else if (type == "disabled") r.enable_thinking = false;
    else bad_request("thinking.type", "'thinking.type' must be 'enabled', 'adaptive' or 'disabled'");
  }
  if (const ordered_json* stop = opt_array(body, "stop_sequences")) {
    for (const ordered_json& s : *stop) {
      if (!s.is_string()) bad_request("stop_sequences", "'stop_sequences' must be an array of strings");
      if (!s.get_ref<const std::string&>().empty()) r.stop.push_back(s.get<std::string>());
    }
  }
  r.sampling.temperature = opt_number_in(body, "temperature", 0, 2);
  r.sampling.top_p = opt_number_in(body, "top_p", 0, 1);
  if (auto k = opt_integer(body, "top_k")) {
    if (*k < 0) bad_request("top_k", "'top_k' must be >= 0");
    r.sampling.top_k = int(std::min<int64_t>(*k, 1 << 30));
  }
  r.stream = opt_bool(body, "stream").value_or(false);
  // metadata, service_tier, context_management, output_config, container, cache_control: accepted, no effect here.
  return r;
}

}  // namespace moeserve::server
