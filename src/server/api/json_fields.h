// Typed reads of request fields with API-grade errors: a wrong type names the field and what was
// expected ("'temperature' must be a number"), so clients see a 400 they can act on.
#pragma once

#include <optional>
#include <string>

#include "server/api/chat_request.h"

namespace moeserve::server {

ordered_json parse_json_body(const std::string& body);  // ApiError on malformed JSON or non-object

// Each returns nullopt when the field is absent or null; throws ApiError when present with the wrong type.
std::optional<std::string> opt_string(const ordered_json& obj, const char* key, const std::string& path = "");
std::optional<bool> opt_bool(const ordered_json& obj, const char* key, const std::string& path = "");
std::optional<double> opt_number(const ordered_json& obj, const char* key, const std::string& path = "");
std::optional<int64_t> opt_integer(const ordered_json& obj, const char* key, const std::string& path = "");
// The number must lie in [lo, hi].
std::optional<double> opt_number_in(const ordered_json& obj, const char* key, double lo, double hi,
                                    const std::string& path = "");
const ordered_json* opt_array(const ordered_json& obj, const char* key, const std::string& path = "");
const ordered_json* opt_object(const ordered_json& obj, const char* key, const std::string& path = "");

[[noreturn]] void bad_request(const std::string& param, const std::string& message);

// "messages[2].content" style paths for messages.
std::string field_path(const std::string& path, const std::string& key);
std::string index_path(const std::string& path, size_t index);

// Tool-call arguments arrive as a JSON string (OpenAI) or object (Anthropic); templates need an object.
ordered_json arguments_object(const ordered_json& arguments, const std::string& path);

}  // namespace moeserve::server
