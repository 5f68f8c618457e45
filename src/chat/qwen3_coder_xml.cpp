#include "chat/qwen3_coder_xml.h"

#include "chat/param_convert.h"
#include "chat/py_value.h"
#include "chat/tag_match.h"
#include "core/error.h"

namespace moeserve::chat {
namespace {

constexpr size_t kMaxParamNameBytes = 256;

// True when the rest of `s` from `k` is a proper prefix of `tag`: undecidable until more text.
bool cut_tag(std::string_view s, size_t k, std::string_view tag) { return match_tag(s, k, tag) == TagMatch::partial; }

}  // namespace

bool valid_function_name_char(char c) {
  switch (c) {
    case '{': case '}': case '<': case '>': case '"': case '\'': case ' ': case '\t': case '\n': case '\r':
      return false;
    default:
      return true;
  }
}

bool Qwen3CoderFunctionBody::seen(std::string_view param) const {
  for (const auto& [name, value] : raw_params_)
    if (name == param) return true;
  return false;
}

// `<parameter=` was matched and its name starts at p: the name runs to `>` on the same line.
Qwen3CoderFunctionBody::Decision Qwen3CoderFunctionBody::read_name(std::string_view s, size_t p, bool final,
                                                                   std::string_view& name, size_t& gt) const {
  for (size_t j = p; j < s.size(); ++j) {
    const char c = s[j];
    if (c == '>') {
      if (j == p) return Decision::no;
      name = s.substr(p, j - p);
      gt = j;
      return Decision::yes;
    }
    if (c == '\n' || c == '<' || j - p >= kMaxParamNameBytes) return Decision::no;
  }
  return final ? Decision::no : Decision::wait;
}

// Is the `</parameter>` that ends at `after` the structural end of the value? At the end of the
// output a tag cut short counts as the end of the text.
size_t Qwen3CoderFunctionBody::skip_space_once(std::string_view s, size_t from) {
  const size_t start = (from >= space_from_ && from <= space_to_) ? space_to_ : from;
  space_from_ = from;
  space_to_ = skip_tag_space(s, start);
  return space_to_;
}

Qwen3CoderFunctionBody::Decision Qwen3CoderFunctionBody::param_close_is_structural(std::string_view s, size_t after,
                                                                                   bool final) {
  const size_t k = skip_space_once(s, after);
  if (k == s.size()) return final ? Decision::yes : Decision::wait;
  const TagMatch open = match_tag(s, k, kParameterOpen);
  if (open == TagMatch::full) {
    if (!schema_known()) return Decision::yes;
    const size_t p = k + kParameterOpen.size();
    for (size_t j = p; j < s.size(); ++j)
      if (s[j] == '>') return tool_->has_param(s.substr(p, j - p)) ? Decision::yes : Decision::no;
    if (!tool_->param_name_prefix(s.substr(p))) return Decision::no;
    return final ? Decision::yes : Decision::wait;
  }
  for (std::string_view tag : {kParameterClose, kFunctionClose, kToolCallClose})
    if (match_tag(s, k, tag) == TagMatch::full) return Decision::yes;
  for (std::string_view tag : {kParameterOpen, kParameterClose, kFunctionClose, kToolCallClose})
    if (cut_tag(s, k, tag)) return final ? Decision::yes : Decision::wait;
  return Decision::no;
}

// After a `</function>` (allow_call_close) or `</tool_call>` met inside a value: does the call
// end here, i.e. does the next tool call or the end of the output follow?
Qwen3CoderFunctionBody::Decision Qwen3CoderFunctionBody::end_follows(std::string_view s, size_t after, bool final,
                                                                     bool allow_call_close) {
  const size_t k = skip_space_once(s, after);
  if (k == s.size()) return final ? Decision::yes : Decision::wait;
  if (match_tag(s, k, kToolCallOpen) == TagMatch::full) return Decision::yes;
  if (allow_call_close && match_tag(s, k, kToolCallClose) == TagMatch::full) return Decision::yes;
  if (cut_tag(s, k, kToolCallOpen) || (allow_call_close && cut_tag(s, k, kToolCallClose)))
    return final ? Decision::yes : Decision::wait;
  return Decision::no;
}

// A line-start `<parameter=NAME>` inside a value ends it (its `</parameter>` was left out) when
// NAME is a parameter this call has not given yet: declared in the schema, or any new name when
// the tool declares none.
bool Qwen3CoderFunctionBody::implicit_end_at(std::string_view name) const {
  if (name == param_ || seen(name)) return false;
  return schema_known() ? tool_->has_param(name) : true;
}

void Qwen3CoderFunctionBody::finish_value(std::string_view s, size_t end, const char* missing_close_reason) {
  std::string raw(s.substr(value_begin_, end - value_begin_));
  if (!raw.empty() && raw.front() == '\n') raw.erase(raw.begin());
  if (!raw.empty() && raw.back() == '\n') raw.pop_back();
  if (missing_close_reason)
    notes_.push_back(str_cat("tool call ", name_, ": parameter ", param_, " has no </parameter> (",
                             missing_close_reason, ")"));
  raw_params_.emplace_back(param_, std::move(raw));
  in_value_ = false;
}

bool Qwen3CoderFunctionBody::scan_value(std::string_view s, bool final) {
  const size_t n = s.size();
  while (true) {
    const size_t i = s.find('<', pos_);
    if (i == std::string_view::npos) {
      pos_ = n;
      if (!final) return false;
      finish_value(s, n, "the output ended");
      return true;
    }
    const bool line_start = s[i - 1] == '\n';  // i >= value_begin_ >= 1
    const bool top = depth_ == 0 && fdepth_ == 0;

    const TagMatch pclose = match_tag(s, i, kParameterClose);
    if (pclose == TagMatch::full) {
      pos_ = i + kParameterClose.size();
      if (depth_ > 0) {
        --depth_;
        continue;
      }
      const Decision d = param_close_is_structural(s, pos_, final);
      if (d == Decision::wait) {
        pos_ = i;
        return false;
      }
      if (d == Decision::yes) {
        finish_value(s, i, nullptr);
        return true;
      }
      continue;
    }

    const TagMatch popen = line_start ? match_tag(s, i, kParameterOpen) : TagMatch::none;
    if (popen == TagMatch::full) {
      std::string_view name;
      size_t gt = 0;
      const Decision d = read_name(s, i + kParameterOpen.size(), final, name, gt);
      if (d == Decision::wait) {
        pos_ = i;
        return false;
      }
      if (d == Decision::yes && top && implicit_end_at(name)) {
        finish_value(s, i, "another parameter began");
        pos_ = i;
        return true;
      }
      ++depth_;
      pos_ = i + kParameterOpen.size();
      continue;
    }

    const TagMatch fopen = line_start ? match_tag(s, i, kFunctionOpen) : TagMatch::none;
    if (fopen == TagMatch::full) {
      ++fdepth_;
      pos_ = i + kFunctionOpen.size();
      continue;
    }

    const TagMatch fclose = match_tag(s, i, kFunctionClose);
    if (fclose == TagMatch::full) {
      pos_ = i + kFunctionClose.size();
      if (fdepth_ > 0) {
        --fdepth_;
        continue;
      }
      if (depth_ == 0) {
        const Decision d = end_follows(s, pos_, final, true);
        if (d == Decision::wait) {
          pos_ = i;
          return false;
        }
        if (d == Decision::yes) {
          finish_value(s, i, "</function> came first");
          pos_ = i;
          return true;
        }
      }
      continue;
    }

    const TagMatch cclose = match_tag(s, i, kToolCallClose);
    if (cclose == TagMatch::full) {
      pos_ = i + kToolCallClose.size();
      if (top) {
        const Decision d = end_follows(s, pos_, final, false);
        if (d == Decision::wait) {
          pos_ = i;
          return false;
        }
        if (d == Decision::yes) {
          finish_value(s, i, "</tool_call> came first");
          pos_ = i;
          return true;
        }
      }
      continue;
    }

    const bool cut_close = pclose == TagMatch::partial || fclose == TagMatch::partial || cclose == TagMatch::partial;
    const bool cut = cut_close || popen == TagMatch::partial || fopen == TagMatch::partial;
    if (cut && !final) {
      pos_ = i;
      return false;
    }
    if (cut_close && top) {  // the output was cut off inside a closing tag: the value ends before it
      finish_value(s, i, "the output ended");
      pos_ = i;
      return true;
    }
    pos_ = i + 1;
  }
}

XmlCallResult Qwen3CoderFunctionBody::result(size_t end, bool closed) {
  PyValue args = PyValue::dict();
  for (const auto& [name, raw] : raw_params_)
    args.dict_set(PyValue::from_string(name), convert_param_value(raw, name, tool_));
  XmlCallResult r;
  r.end = end;
  r.arguments = py_json_dumps(args);
  r.notes = std::move(notes_);
  if (!closed) r.notes.push_back(str_cat("tool call ", name_, ": no </function>"));
  return r;
}

std::optional<XmlCallResult> Qwen3CoderFunctionBody::advance(std::string_view s, bool final) {
  const size_t n = s.size();
  while (true) {
    if (in_value_) {
      if (!scan_value(s, final)) return std::nullopt;
      continue;
    }
    pos_ = skip_tag_space(s, pos_);
    if (pos_ >= n) {
      if (final) return result(n, false);
      return std::nullopt;
    }
    if (s[pos_] != '<') {  // stray text between parameters is ignored
      const size_t next = s.find('<', pos_);
      pos_ = next == std::string_view::npos ? n : next;
      continue;
    }
    const TagMatch fclose = match_tag(s, pos_, kFunctionClose);
    if (fclose == TagMatch::full) return result(pos_ + kFunctionClose.size(), true);
    const TagMatch popen = match_tag(s, pos_, kParameterOpen);
    if (popen == TagMatch::full) {
      std::string_view name;
      size_t gt = 0;
      const Decision d = read_name(s, pos_ + kParameterOpen.size(), final, name, gt);
      if (d == Decision::wait) return std::nullopt;
      if (d == Decision::yes) {
        param_ = std::string(name);
        value_begin_ = gt + 1;
        pos_ = value_begin_;
        depth_ = fdepth_ = 0;
        in_value_ = true;
        continue;
      }
      ++pos_;
      continue;
    }
    const TagMatch cclose = match_tag(s, pos_, kToolCallClose);
    const TagMatch copen = match_tag(s, pos_, kToolCallOpen);
    if (cclose == TagMatch::full || copen == TagMatch::full) return result(pos_, false);
    const bool cut = fclose == TagMatch::partial || popen == TagMatch::partial || cclose == TagMatch::partial ||
                     copen == TagMatch::partial;
    if (cut && !final) return std::nullopt;
    ++pos_;
  }
}

}  // namespace moeserve::chat
