#include "grammar/constrained_output.h"

#include <algorithm>

#include "core/error.h"
#include "grammar/json_schema.h"

namespace moeserve::grammar {
namespace {

using json = nlohmann::ordered_json;
using B = GrammarBuilder;

std::shared_ptr<const Grammar> finish(GrammarBuilder& b, const ReplyShape& shape, Element body) {
  Sequence root;
  if (!shape.reasoning_end.empty()) {
    root.push_back(b.text_without(shape.reasoning_end));
    B::append(root, B::lit(shape.reasoning_end));
    root.push_back(json_space(b));
  }
  root.push_back(body);
  return b.build(b.rule_of({std::move(root)}));
}

const json* parameters_of(const json& fn) {
  const auto it = fn.find("parameters");
  return it != fn.end() && it->is_object() ? &*it : nullptr;
}

// A Qwen3-Coder parameter value: strings are raw text (enums their raw values), booleans and null
// also in Python's spelling, anything else JSON.
Element xml_value(GrammarBuilder& b, const json& schema, const json& root) {
  const auto type = schema.find("type");
  const bool is_string = type != schema.end() && type->is_string() && type->get<std::string>() == "string";
  if (is_string || type == schema.end()) {
    if (const auto e = schema.find("enum"); is_string && e != schema.end() && e->is_array() && !e->empty() &&
                                            std::all_of(e->begin(), e->end(), [](const json& v) { return v.is_string(); })) {
      std::vector<Sequence> alts;
      for (const json& v : *e) alts.push_back(B::lit(v.get<std::string>()));
      return B::ref(b.rule_of(std::move(alts)));
    }
    return b.text_without("</parameter>");
  }
  // The template writes booleans and null with Python's str() (vLLM's converter reads both forms).
  if (type->is_string() && type->get<std::string>() == "boolean") {
    return B::ref(b.rule_of({B::lit("true"), B::lit("false"), B::lit("True"), B::lit("False")}));
  }
  if (type->is_string() && type->get<std::string>() == "null") return B::ref(b.rule_of({B::lit("null"), B::lit("None")}));
  return compile_json_schema(b, schema, root);
}

Element xml_call(GrammarBuilder& b, const std::string& name, const json* params) {
  Sequence call = B::lit("<tool_call>\n<function=" + name + ">\n");
  // rest[i]: parameters from i on, declaration order, required ones always.
  std::vector<std::string> names;
  std::vector<bool> required;
  const json empty = json::object();
  const json& props = params && params->contains("properties") && (*params)["properties"].is_object() ? (*params)["properties"] : empty;
  for (const auto& [pname, sub] : props.items()) {
    names.push_back(pname);
    bool req = false;
    if (const auto r = params->find("required"); r != params->end() && r->is_array()) {
      req = std::find(r->begin(), r->end(), json(pname)) != r->end();
    }
    required.push_back(req);
  }
  uint32_t rest = b.rule_of({{}});
  for (size_t i = names.size(); i-- > 0;) {
    Sequence p = B::lit("<parameter=" + names[i] + ">\n");
    p.push_back(xml_value(b, props[names[i]], *params));
    B::append(p, B::lit("\n</parameter>\n"));
    p.push_back(B::ref(rest));
    std::vector<Sequence> alts = {std::move(p)};
    if (!required[i]) alts.push_back({B::ref(rest)});
    rest = b.rule_of(std::move(alts));
  }
  call.push_back(B::ref(rest));
  B::append(call, B::lit("</function>\n</tool_call>"));
  return B::ref(b.rule_of({std::move(call)}));
}

Element hermes_call(GrammarBuilder& b, const std::string& name, const json* params) {
  Sequence call = B::lit("<tool_call>\n{\"name\": " + json(name).dump() + ", \"arguments\": ");
  call.push_back(params ? compile_json_schema(b, *params, *params) : json_value(b, true));
  B::append(call, B::lit("}\n</tool_call>"));
  return B::ref(b.rule_of({std::move(call)}));
}

}  // namespace

std::shared_ptr<const Grammar> json_reply_grammar(const json& schema, const ReplyShape& shape) {
  GrammarBuilder b;
  const Element body = schema.is_null() ? json_value(b, true) : compile_json_schema(b, schema, schema);
  return finish(b, shape, body);
}

std::shared_ptr<const Grammar> tool_call_grammar(ToolSyntax syntax, const json& tools, const std::vector<std::string>& allowed,
                                                 bool parallel, const ReplyShape& shape) {
  GrammarBuilder b;
  std::vector<Sequence> calls;
  for (const json& tool : tools) {
    const json& fn = tool.contains("function") ? tool["function"] : tool;
    if (!fn.contains("name") || !fn["name"].is_string()) continue;
    const std::string name = fn["name"].get<std::string>();
    if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), name) == allowed.end()) continue;
    const json* params = parameters_of(fn);
    try {
      calls.push_back({syntax == ToolSyntax::qwen3_coder_xml ? xml_call(b, name, params) : hermes_call(b, name, params)});
    } catch (const Error& e) {
      fail("tool '", name, "' parameters: ", e.what());
    }
  }
  if (calls.empty()) fail("no tool can be called: tool_choice names none of the request's tools");
  const Element one = B::ref(b.rule_of(std::move(calls)));
  Sequence body = {one};
  if (parallel) body.push_back(b.repeat({B::byte('\n'), one}, 0, -1));
  return finish(b, shape, B::ref(b.rule_of({std::move(body)})));
}

}  // namespace moeserve::grammar
