#!/usr/bin/env python3
"""Renders every chat template x every chat case with Python jinja2, configured exactly as Hugging
Face transformers configures it (transformers/utils/chat_template_utils.py: ImmutableSandboxedEnvironment
with trim_blocks, lstrip_blocks, the loopcontrols extension and a `generation` block tag; its tojson,
raise_exception and strftime_now), and with `moeserve template`; the two must agree byte for byte,
and where jinja2 raises, moeserve must fail too.

usage: jinja_reference.py --binary PATH --templates DIR [--templates DIR ...]
                          (--cases FILE | --random N [--seed S]) [--verbose]
"""
import argparse
import copy
import datetime
import difflib
import json
import os
import random
import subprocess
import sys
import tempfile

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

FIXED_NOW = datetime.datetime(2024, 7, 26, 10, 30, 15)
BOS = "<|bos|>"
EOS = "<|eos|>"


class GenerationTag(jinja2.ext.Extension):
    """transformers' AssistantTracker: {% generation %}...{% endgeneration %} renders its body."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def make_environment():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return FIXED_NOW.strftime(format)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


_compiled = {}


def compile_cached(env, source):
    if source not in _compiled:
        try:
            _compiled[source] = env.from_string(source)
        except Exception as e:  # a syntax error fails every render of this template
            _compiled[source] = e
    if isinstance(_compiled[source], Exception):
        raise _compiled[source]
    return _compiled[source]


def reference_render(env, source, case):
    """(output, None) or (None, error text)."""
    try:
        template = compile_cached(env, source)
        # jinja2 can modify inputs in place (indent's `s += "\n"` extends a list), so each render
        # gets its own copy.
        case = copy.deepcopy(case)
        variables = dict(case.get("kwargs", {}))
        variables.setdefault("bos_token", BOS)
        variables.setdefault("eos_token", EOS)
        return (
            template.render(
                messages=case["messages"],
                tools=case.get("tools"),
                documents=None,
                add_generation_prompt=case.get("add_generation_prompt", True),
                **variables,
            ),
            None,
        )
    except Exception as e:  # any failure of jinja2 (syntax, undefined, type, raise_exception)
        return None, f"{type(e).__name__}: {e}"


def moeserve_render(binary, template_path, case, workdir):
    files = {}
    for key in ("messages", "tools", "kwargs"):
        if key in case:
            path = os.path.join(workdir, key + ".json")
            with open(path, "w", encoding="utf-8") as f:
                json.dump(case[key], f, ensure_ascii=False)
            files[key] = path
    args = [binary, "template", "--chat-template-file", template_path, "--messages", files["messages"],
            "--bos-token", BOS, "--eos-token", EOS, "--now", FIXED_NOW.strftime("%Y-%m-%dT%H:%M:%S")]
    if "tools" in files:
        args += ["--tools", files["tools"]]
    if "kwargs" in files:
        args += ["--kwargs", files["kwargs"]]
    if not case.get("add_generation_prompt", True):
        args.append("--no-generation-prompt")
    r = subprocess.run(args, capture_output=True, timeout=60)
    return r.returncode, r.stdout, r.stderr.decode("utf-8", "replace")


WORDS = ["hello", "world", "Read", "main.c", "ok", "<b>bold</b>", "a & b", "it's", '"quoted"', "back\\slash", "tab\t",
         "naïve", "日本語", "🚀", "Ωμέγα", "ΣΑΣ", "\u2028", "zero\u200bwidth", "{{ not_jinja }}", "{% raw %}", "<think>",
         "</think>", "<tool_call>", "[INST]", "<|im_end|>", "  ", "\n", "\n\n", "x" * 40]


def random_text(rng):
    if rng.random() < 0.08:
        return ""
    return "".join(rng.choice(WORDS) + rng.choice([" ", "", "\n", ", "]) for _ in range(rng.randrange(1, 12)))


def random_value(rng, depth=0):
    k = rng.randrange(9 if depth < 2 else 6)
    if k == 0:
        return rng.randrange(-1000, 100000)
    if k == 1:
        return rng.choice([0.5, 2.0, -1.25, 1e-7, 3.14159, 1e16, 100.0, rng.uniform(-1e3, 1e3)])
    if k == 2:
        return rng.choice([True, False, None])
    if k in (3, 4, 5):
        return random_text(rng)
    if k in (6, 7):
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    return {f"k{j}": random_value(rng, depth + 1) for j in range(rng.randrange(0, 4))}


def random_case(rng, index):
    """A random but well-formed conversation, with tools, calls and template variables."""
    tool_names = ["get_weather", "read_file", "search_code", "run"]
    tools = []
    for name in rng.sample(tool_names, rng.randrange(0, 4)):
        props = {}
        for j in range(rng.randrange(0, 4)):
            prop = {"type": rng.choice(["string", "integer", "number", "boolean", "array", "object"])}
            if rng.random() < 0.7:
                prop["description"] = random_text(rng)
            if prop["type"] == "string" and rng.random() < 0.3:
                prop["enum"] = ["a", "b"]
            if prop["type"] == "array":
                prop["items"] = {"type": rng.choice(["string", "integer"])}
            props[f"p{j}"] = prop
        fn = {"name": name, "description": random_text(rng) or "does things",
              "parameters": {"type": "object", "properties": props, "required": list(props)[:1]}}
        tools.append({"type": "function", "function": fn})
    messages = []
    if rng.random() < 0.6:
        messages.append({"role": "system", "content": random_text(rng)})
    for turn in range(rng.randrange(1, 5)):
        messages.append({"role": "user", "content": random_text(rng) if rng.random() < 0.9 else
                         [{"type": "text", "text": random_text(rng)}, {"type": "image"}]})
        if turn == 0 and rng.random() < 0.3:
            continue
        msg = {"role": "assistant", "content": random_text(rng)}
        if rng.random() < 0.3:
            msg["reasoning_content"] = random_text(rng)
        if tools and rng.random() < 0.5:
            calls = []
            for c in range(rng.randrange(1, 3)):
                args = {f"p{j}": random_value(rng) for j in range(rng.randrange(0, 4))}
                call_id = "".join(rng.choice("abcdefghij0123456789") for _ in range(9))
                calls.append({"id": call_id, "type": "function", "function": {
                    "name": rng.choice(tools)["function"]["name"],
                    "arguments": json.dumps(args, ensure_ascii=False) if rng.random() < 0.4 else args}})
            msg["tool_calls"] = calls
            if rng.random() < 0.5:
                msg["content"] = rng.choice([None, ""])
            messages.append(msg)
            for call in calls:
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": random_text(rng)})
            continue
        messages.append(msg)
    case = {"name": f"random-{index}", "messages": messages, "add_generation_prompt": rng.random() < 0.8}
    if tools or rng.random() < 0.3:
        case["tools"] = tools
    kwargs = {}
    for key, choices in (("enable_thinking", [True, False]), ("reasoning_effort", ["low", "high"]),
                         ("thinking", [True, False])):
        if rng.random() < 0.3:
            kwargs[key] = rng.choice(choices)
    if kwargs:
        case["kwargs"] = kwargs
    return case


def first_difference(expected, actual):
    n = min(len(expected), len(actual))
    i = next((k for k in range(n) if expected[k] != actual[k]), n)
    lo = max(0, i - 80)
    return f"at char {i}:\n  expected: {expected[lo:i + 80]!r}\n  actual:   {actual[lo:i + 80]!r}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--templates", action="append", required=True)
    ap.add_argument("--cases")
    ap.add_argument("--only", default="")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--random", type=int, default=0, help="use N random conversations instead of --cases")
    ap.add_argument("--seed", type=int, default=1)
    opts = ap.parse_args()

    if opts.random:
        rng = random.Random(opts.seed)
        cases = [random_case(rng, i) for i in range(opts.random)]
    else:
        with open(opts.cases, encoding="utf-8") as f:
            cases = json.load(f)["cases"]
    templates = []
    for d in opts.templates:
        for name in sorted(os.listdir(d)):
            if name.endswith(".jinja") and opts.only in name:
                templates.append(os.path.join(d, name))

    env = make_environment()
    failures = []
    total = 0
    with tempfile.TemporaryDirectory() as workdir:
        for path in templates:
            with open(path, encoding="utf-8", newline="") as f:
                source = f.read()
            passed = raised = 0
            for case in cases:
                total += 1
                expected, error = reference_render(env, source, case)
                status, out, err = moeserve_render(opts.binary, path, case, workdir)
                label = f"{os.path.basename(path)} x {case['name']}"
                if error is not None:
                    # raise_exception(msg) raises the base TemplateError: the message must match too.
                    template_raised = error.startswith("TemplateError: ")
                    expected_text = "raised an exception" if template_raised else "error"
                    if status == 1 and expected_text in err and (not template_raised or error[15:] in err):
                        passed += 1
                        raised += 1
                        if opts.verbose:
                            print(f"  {label}: both raise\n    jinja2:   {error}\n    moeserve: {err.strip()}")
                    else:
                        failures.append(f"{label}: jinja2 raised ({error}) but moeserve exited {status}: {err.strip()}")
                    continue
                if status != 0:
                    failures.append(f"{label}: moeserve failed ({err.strip()}) where jinja2 rendered")
                    continue
                actual = out.decode("utf-8", "replace")
                if actual == expected:
                    passed += 1
                else:
                    failures.append(f"{label}: output differs {first_difference(expected, actual)}")
            print(f"{'PASS' if passed == len(cases) else 'FAIL'} {passed:3d}/{len(cases)} "
                  f"({raised} raise in both) {os.path.basename(path)}")
    for f in failures:
        print("  " + f)
    print(f"{total - len(failures)}/{total} renders match jinja2")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
