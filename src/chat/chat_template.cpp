#include "chat/chat_template.h"

#include <cstdio>

#include "core/error.h"

namespace moeserve::chat {

ChatTemplate::ChatTemplate(std::string source)
    : source_(std::move(source)), template_(jinja::Template::compile(source_)) {}

std::string ChatTemplate::render(const ChatInputs& inputs, const jinja::RenderLimits& limits) const {
  using jinja::Value;
  jinja::DictData context;
  context.set(Value::string("messages"), jinja::from_json(inputs.messages));
  context.set(Value::string("tools"), inputs.tools ? jinja::from_json(*inputs.tools) : Value::none());
  context.set(Value::string("documents"), Value::none());
  context.set(Value::string("add_generation_prompt"), Value::boolean(inputs.add_generation_prompt));
  if (inputs.bos_token) context.set(Value::string("bos_token"), Value::string(*inputs.bos_token));
  if (inputs.eos_token) context.set(Value::string("eos_token"), Value::string(*inputs.eos_token));
  if (!inputs.extra.is_object()) fail("extra template variables must be a JSON object");
  for (auto it = inputs.extra.begin(); it != inputs.extra.end(); ++it) {
    const std::string& key = it.key();
    if (key == "messages" || key == "tools" || key == "add_generation_prompt")
      fail("extra template variable '", key, "' is set by its own option");
    context.set(Value::string(key), jinja::from_json(it.value()));
  }
  jinja::RenderOptions options;
  options.limits = limits;
  options.now = inputs.now;
  return template_.render(context, options);
}

std::tm parse_fixed_time(const std::string& text) {
  std::tm tm{};
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
  char tail = 0;
  const int n = std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%c", &y, &mo, &d, &h, &mi, &s, &tail);
  if (!(n == 3 || n == 6) || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60)
    fail("time '", text, "' is not YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS");
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  // Fill in the weekday and day of the year without any time-zone shift.
  std::tm copy = tm;
  const std::time_t t = timegm(&copy);
  std::tm normalized{};
  gmtime_r(&t, &normalized);
  tm.tm_wday = normalized.tm_wday;
  tm.tm_yday = normalized.tm_yday;
  tm.tm_isdst = -1;
  return tm;
}

}  // namespace moeserve::chat
