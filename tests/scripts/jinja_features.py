#!/usr/bin/env python3
"""Renders each template snippet of a features file with Python jinja2 (transformers' environment,
see jinja_reference.py) and with `moeserve template`; outputs must be identical, and where jinja2
raises, moeserve must fail too. Snippets whose name contains "crlf" are written with CRLF line ends.

usage: jinja_features.py --binary PATH --features FILE --context FILE [--only NAME]
"""
import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile

import jinja2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from jinja_reference import BOS, EOS, FIXED_NOW, first_difference, make_environment  # noqa: E402


def read_snippets(path):
    snippets = []
    with open(path, encoding="utf-8", newline="") as f:
        name, lines = None, []
        for line in f:
            if line.startswith("### "):
                if name is not None:
                    snippets.append((name, "".join(lines)))
                name, lines = line[4:].strip(), []
            else:
                lines.append(line)
        if name is not None:
            snippets.append((name, "".join(lines)))
    return snippets


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--features", required=True)
    ap.add_argument("--context", required=True)
    ap.add_argument("--only", default="")
    opts = ap.parse_args()
    with open(opts.context, encoding="utf-8") as f:
        context = json.load(f)
    env = make_environment()
    failures = []
    snippets = [s for s in read_snippets(opts.features) if opts.only in s[0]]
    with tempfile.TemporaryDirectory() as workdir:
        messages_path = os.path.join(workdir, "messages.json")
        context_path = os.path.join(workdir, "context.json")
        with open(messages_path, "w") as f:
            json.dump([], f)
        with open(context_path, "w", encoding="utf-8") as f:
            json.dump(context, f, ensure_ascii=False)
        for name, source in snippets:
            if "crlf" in name:
                source = source.replace("\n", "\r\n")
            template_path = os.path.join(workdir, "t.jinja")
            with open(template_path, "w", encoding="utf-8", newline="") as f:
                f.write(source)
            syntax_line = None
            try:
                expected = env.from_string(source).render(
                    messages=[], tools=None, documents=None, add_generation_prompt=True,
                    bos_token=BOS, eos_token=EOS, **copy.deepcopy(context))
                error = None
            except jinja2.TemplateSyntaxError as e:
                # Syntax errors must point at the same line as jinja2's.
                expected, error = None, f"{type(e).__name__}: {e} (line {e.lineno})"
                syntax_line = e.lineno
            except Exception as e:
                expected, error = None, f"{type(e).__name__}: {e}"
            r = subprocess.run(
                [opts.binary, "template", "--chat-template-file", template_path, "--messages", messages_path,
                 "--kwargs", context_path, "--bos-token", BOS, "--eos-token", EOS,
                 "--now", FIXED_NOW.strftime("%Y-%m-%dT%H:%M:%S")],
                capture_output=True, timeout=60)
            err = r.stderr.decode("utf-8", "replace").strip()
            if error is not None:
                if r.returncode == 1 and "error" in err and (syntax_line is None or f"line {syntax_line}," in err):
                    print(f"ok   {name} (both raise: {error} | {err})")
                else:
                    failures.append(f"{name}: jinja2 raised ({error}) but moeserve exited {r.returncode}: "
                                    f"{r.stdout.decode('utf-8', 'replace')!r}")
                continue
            if r.returncode != 0:
                failures.append(f"{name}: moeserve failed ({err}) where jinja2 rendered {expected!r}")
                continue
            actual = r.stdout.decode("utf-8", "replace")
            if actual == expected:
                print(f"ok   {name}")
            else:
                failures.append(f"{name}: output differs {first_difference(expected, actual)}")
    for f in failures:
        print("FAIL " + f)
    print(f"{len(snippets) - len(failures)}/{len(snippets)} snippets match jinja2")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
