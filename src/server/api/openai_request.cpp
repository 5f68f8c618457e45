// Parsing and validating OpenAI requests into the internal ChatRequest.
#include "server/api/json_fields.h"
#include "server/api/openai_api.h"

namespace moeserve::server {
namespace {

// Content may be a string, null, or an array of parts; templates want one string.
ordered_json flatten_content(const ordered_json& content, const std::string& path) {
  if (content.is_null() || content.is_string()) return content;
  if (!content.is_array()) bad_request(path, "'" + path + "' must be a string, null or an array of content parts");
  std::string text;
  for (size_t i = 0; i < content.size(); ++i) {
    const ordered_json& part = content[i];
    const std::string p = index_path(path, i);
    if (!part.is_object()) bad_request(p, "'" + p + "' must be an object");
    const std::string type = opt_string(part, "type", p).value_or("text");
    if (type == "text" || type == "input_text") {
      const auto t = opt_string(part, "text", p);
      if (!t) bad_request(field_path(p, "text"), "'" + field_path(p, "text") + "' is required");
      text += *t;
    } else {
      throw ApiError{400, "content part type '" + type + "' is not supported by this model (text only)",
                     "invalid_request_error", field_path(p, "type")};
    }
  }
  return text;
}

ordered_json parse_message(const ordered_json& m, const std::string& path) {
  if (!m.is_object()) bad_request(path, "'" + path + "' must be an object");
  const auto role = opt_string(m, "role", path);
  if (!role) bad_request(field_path(path, "role"), "'" + field_path(path, "role") + "' is required");
  static const char* kRoles[] = {"system", "developer", "user", "assistant", "tool", "function"};
  if (std::find(std::begin(kRoles), std::end(kRoles), *role) == std::end(kRoles)) {
    bad_request(field_path(path, "role"), "unknown role '" + *role + "' in '" + field_path(path, "role") + "'");
  }
  ordered_json out = ordered_json::object();
  // Chat templates know "system"; OpenAI's newer "developer" role means the same.
  out["role"] = *role == "developer" ? "system" : *role == "function" ? "tool" : *role;
  const auto content_it = m.find("content");
  out["content"] = content_it == m.end() ? ordered_json(nullptr) : flatten_content(*content_it, field_path(path, "content"));
  if (auto name = opt_string(m, "name", path)) out["name"] = *name;
  if (auto reasoning = opt_string(m, "reasoning_content", path)) out["reasoning_content"] = *reasoning;
  if (*role == "tool" || *role == "function") {
    if (auto id = opt_string(m, "tool_call_id", path)) out["tool_call_id"] = *id;
  }
  if (const ordered_json* calls = opt_array(m, "tool_calls", path)) {
    if (*role != "assistant") bad_request(field_path(path, "tool_calls"), "only assistant messages carry tool_calls");
    ordered_json list = ordered_json::array();
    for (size_t i = 0; i < calls->size(); ++i) {
      const ordered_json& c = (*calls)[i];
      const std::string p = index_path(field_path(path, "tool_calls"), i);
      if (!c.is_object()) bad_request(p, "'" + p + "' must be an object");
      const ordered_json* fn = opt_object(c, "function", p);
      if (!fn) bad_request(field_path(p, "function"), "'" + field_path(p, "function") + "' is required");
      const auto name = opt_string(*fn, "name", field_path(p, "function"));
      if (!name) bad_request(field_path(p, "function.name"), "'" + field_path(p, "function.name") + "' is required");
      const auto args_it = fn->find("arguments");
      ordered_json call = ordered_json::object();
      call["id"] = opt_string(c, "id", p).value_or("call_" + std::to_string(i));
      call["type"] = "function";
      call["function"] = {{"name", *name},
                          {"arguments", arguments_object(args_it == fn->end() ? ordered_json() : *args_it,
                                                         field_path(p, "function.arguments"))}};
      list.push_back(std::move(call));
    }
    if (!list.empty()) out["tool_calls"] = std::move(list);
  }
  return out;
}

ordered_json parse_tools(const ordered_json& tools) {
  ordered_json out = ordered_json::array();
  for (size_t i = 0; i < tools.size(); ++i) {
    const ordered_json& t = tools[i];
    const std::string p = index_path("tools", i);
    if (!t.is_object()) bad_request(p, "'" + p + "' must be an object");
    const std::string type = opt_string(t, "type", p).value_or("function");
    if (type != "function") bad_request(field_path(p, "type"), "tool type '" + type + "' is not supported (only 'function')");
    const ordered_json* fn = opt_object(t, "function", p);
    if (!fn) bad_request(field_path(p, "function"), "'" + field_path(p, "function") + "' is required");
    const auto name = opt_string(*fn, "name", field_path(p, "function"));
    if (!name || name->empty()) bad_request(field_path(p, "function.name"), "'" + field_path(p, "function.name") + "' is required");
    opt_string(*fn, "description", field_path(p, "function"));
    opt_object(*fn, "parameters", field_path(p, "function"));
    out.push_back({{"type", "function"}, {"function", *fn}});
  }
  return out;
}

std::vector<std::string> parse_stop(const ordered_json& body) {
  const auto it = body.find("stop");
  if (it == body.end() || it->is_null()) return {};
  if (it->is_string()) return {it->get<std::string>()};
  if (!it->is_array()) bad_request("stop", "'stop' must be a string or an array of strings");
  std::vector<std::string> stop;
  for (const ordered_json& s : *it) {
    if (!s.is_string()) bad_request("stop", "'stop' must be a string or an array of strings");
    if (!s.get_ref<const std::string&>().empty()) stop.push_back(s.get<std::string>());
  }
  if (stop.size() > 16) bad_request("stop", "'stop' may hold at most 16 strings");
  return stop;
}

SamplingRequest parse_sampling(const ordered_json& body) {
  SamplingRequest s;
  s.temperature = opt_number_in(body, "temperature", 0, 100);
  s.top_p = opt_number_in(body, "top_p", 0, 1);
  if (auto k = opt_integer(body, "top_k")) {
    if (*k < 0) bad_request("top_k", "'top_k' must be >= 0");
    s.top_k = int(std::min<int64_t>(*k, 1 << 30));
  }
  s.min_p = opt_number_in(body, "min_p", 0, 1);
  s.presence_penalty = opt_number_in(body, "presence_penalty", -2, 2);
  s.frequency_penalty = opt_number_in(body, "frequency_penalty", -2, 2);
  s.repeat_penalty = opt_number_in(body, "repeat_penalty", 0, 100);
  if (auto n = opt_integer(body, "repeat_last_n")) {
    if (*n < -1) bad_request("repeat_last_n", "'repeat_last_n' must be >= -1");
    s.repeat_last_n = std::min<int64_t>(*n, 1 << 30);
  }
  s.typical_p = opt_number_in(body, "typical_p", 0, 1);
  if (auto seed = opt_integer(body, "seed")) s.seed = uint64_t(*seed);
  if (const ordered_json* bias = opt_object(body, "logit_bias")) {
    for (const auto& [key, value] : bias->items()) {
      int64_t id = -1;
      try {
        size_t used = 0;
        id = std::stoll(key, &used);
        if (used != key.size()) id = -1;
      } catch (const std::exception&) {
      }
      if (id < 0 || id > INT32_MAX) bad_request("logit_bias", "'logit_bias' keys must be token ids, got '" + key + "'");
      if (!value.is_number()) bad_request("logit_bias", "'logit_bias' values must be numbers");
      s.logit_bias[int32_t(id)] = std::clamp(value.get<float>(), -100.0f, 100.0f);
    }
  }
  return s;
}

std::optional<int64_t> parse_max_tokens(const ordered_json& body) {
  std::optional<int64_t> n = opt_integer(body, "max_completion_tokens");
  if (!n) n = opt_integer(body, "max_tokens");
  if (!n) n = opt_integer(body, "n_predict");  // llama-server's name
  if (n && *n < 1 && *n != -1) bad_request("max_tokens", "'max_tokens' must be at least 1");
  if (n && *n == -1) n.reset();
  return n;
}

void check_n(const ordered_json& body) {
  if (auto n = opt_integer(body, "n"); n && *n != 1) bad_request("n", "only n = 1 is supported");
}

}  // namespace

ChatRequest parse_openai_chat_request(const ordered_json& body) {
  ChatRequest r;
  r.model = opt_string(body, "model").value_or("");
  const ordered_json* messages = opt_array(body, "messages");
  if (!messages) bad_request("messages", "'messages' is required");
  if (messages->empty()) bad_request("messages", "'messages' must not be empty");
  for (size_t i = 0; i < messages->size(); ++i) r.messages.push_back(parse_message((*messages)[i], index_path("messages", i)));
  if (const ordered_json* tools = opt_array(body, "tools")) r.tools = parse_tools(*tools);

  const auto choice = body.find("tool_choice");
  if (choice != body.end() && !choice->is_null()) {
    if (choice->is_string()) {
      const std::string c = choice->get<std::string>();
      if (c == "auto") r.tool_choice = ToolChoice::auto_;
      else if (c == "none") r.tool_choice = ToolChoice::none;
      else if (c == "required") r.tool_choice = ToolChoice::required;
      else bad_request("tool_choice", "'tool_choice' must be 'auto', 'none', 'required' or a function object");
    } else if (choice->is_object()) {
      const ordered_json* fn = opt_object(*choice, "function", "tool_choice");
      const auto name = fn ? opt_string(*fn, "name", "tool_choice.function") : std::nullopt;
      if (!name) bad_request("tool_choice", "'tool_choice.function.name' is required");
      r.tool_choice = ToolChoice::named;
      r.tool_choice_name = *name;
    } else {
      bad_request("tool_choice", "'tool_choice' must be a string or an object");
    }
  }
  if ((r.tool_choice == ToolChoice::required || r.tool_choice == ToolChoice::named) && r.tools.empty()) {
    bad_request("tool_choice", "'tool_choice' requires 'tools'");
  }
  r.parallel_tool_calls = opt_bool(body, "parallel_tool_calls").value_or(true);
  if (const ordered_json* kwargs = opt_object(body, "chat_template_kwargs")) {
    r.chat_template_kwargs = *kwargs;
    if (const auto it = kwargs->find("enable_thinking"); it != kwargs->end() && it->is_boolean()) r.enable_thinking = it->get<bool>();
  }
  r.max_tokens = parse_max_tokens(body);
  r.stop = parse_stop(body);
  r.sampling = parse_sampling(body);
  check_n(body);
  r.stream = opt_bool(body, "stream").value_or(false);
  if (const ordered_json* so = opt_object(body, "stream_options")) r.include_usage = opt_bool(*so, "include_usage", "stream_options").value_or(false);
  r.logprobs = opt_bool(body, "logprobs").value_or(false);
  if (auto top = opt_integer(body, "top_logprobs")) {
    if (*top < 0 || *top > 20) bad_request("top_logprobs", "'top_logprobs' must be between 0 and 20");
    if (!r.logprobs) bad_request("top_logprobs", "'top_logprobs' requires 'logprobs': true");
    r.top_logprobs = int(*top);
  }
  if (const ordered_json* fmt = opt_object(body, "response_format")) {
    const auto type = opt_string(*fmt, "type", "response_format");
    if (!type) bad_request("response_format.type", "'response_format.type' is required");
    if (*type == "json_schema") {
      const ordered_json* js = opt_object(*fmt, "json_schema", "response_format");
      const ordered_json* schema = js ? opt_object(*js, "schema", "response_format.json_schema") : nullptr;
      if (!schema) bad_request("response_format.json_schema.schema", "'response_format.json_schema.schema' is required");
      r.response_schema = *schema;
    } else if (*type != "text" && *type != "json_object") {
      bad_request("response_format.type", "'response_format.type' must be 'text', 'json_object' or 'json_schema'");
    }
    r.response_format = *type;
  }
  return r;
}

CompletionRequest parse_openai_completion_request(const ordered_json& body) {
  CompletionRequest r;
  r.model = opt_string(body, "model").value_or("");
  const auto prompt = body.find("prompt");
  if (prompt == body.end() || prompt->is_null()) bad_request("prompt", "'prompt' is required");
  if (prompt->is_array() && prompt->size() == 1 && (*prompt)[0].is_string()) {
    r.prompt = (*prompt)[0];
  } else if (prompt->is_array()) {
    for (const ordered_json& t : *prompt) {
      if (!t.is_number_integer() || t.get<int64_t>() < 0) {
        bad_request("prompt", "'prompt' must be a string, one string in an array, or an array of token ids");
      }
    }
    r.prompt = *prompt;
  } else if (prompt->is_string()) {
    r.prompt = *prompt;
  } else {
    bad_request("prompt", "'prompt' must be a string or an array of token ids");
  }
  r.max_tokens = parse_max_tokens(body);
  r.stop = parse_stop(body);
  r.sampling = parse_sampling(body);
  check_n(body);
  r.stream = opt_bool(body, "stream").value_or(false);
  if (const ordered_json* so = opt_object(body, "stream_options")) r.include_usage = opt_bool(*so, "include_usage", "stream_options").value_or(false);
  r.echo = opt_bool(body, "echo").value_or(false);
  if (auto lp = opt_integer(body, "logprobs")) {
    if (*lp < 0 || *lp > 20) bad_request("logprobs", "'logprobs' must be between 0 and 20");
    r.logprobs = int(*lp);
  }
  return r;
}

}  // namespace moeserve::server
