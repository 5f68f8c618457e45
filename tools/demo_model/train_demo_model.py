#!/usr/bin/env python3
"""Trains moeserve's bundled demo model: a small qwen3next (Gated DeltaNet + gated attention + MoE)
language model on the Python standard library's sources, with its own byte-level BPE tokenizer.

Runs on a machine with torch, transformers (with Qwen3Next) and tokenizers, ideally a GPU:
    python3 tools/demo_model/train_demo_model.py --out DIR [--minutes 7]
Writes DIR/model.safetensors (bf16), config.json, tokenizer.json, tokenizer_config.json (with the
Qwen3-Coder chat template), generation_config.json and train_log.txt. Convert with
`moeserve convert DIR -o model.gguf` (see tools/demo_model/README.md).

Second stage, so the model answers in chat turns and ends them with <|im_end|>:
    python3 tools/demo_model/train_demo_model.py --out DIR2 --chat-from DIR [--minutes 3]
continues training DIR's model on ChatML conversations (a request for a standard-library function
or class, answered with its source) mixed with plain source text.
"""
import argparse
import ast
import json
import math
import os
import random
import sys
import time

import torch
import transformers
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import Qwen3NextConfig, Qwen3NextForCausalLM

# Qwen2/Qwen3 pre-tokenizer split (gguf.md §5.1), so that moeserve's `qwen2` pre-tokenizer applies.
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
ADDED_TOKENS = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>",
                "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>"]


def stdlib_sources():
    root = os.path.dirname(os.__file__)
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in ("site-packages", "dist-packages", "__pycache__"))
        for name in sorted(filenames):
            if name.endswith(".py"):
                files.append(os.path.join(dirpath, name))
    texts = []
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (UnicodeDecodeError, OSError):
            continue
        if 200 < len(text) < 400_000:
            module = os.path.relpath(path, root)[:-3].replace(os.sep, ".").removesuffix(".__init__")
            texts.append((module, text))
    return texts


REQUESTS = [
    "Write a Python function `{name}`{about}.",
    "Show me how `{name}` is implemented in the `{module}` module.",
    "Implement `{name}` in Python{about}.",
    "Can you write `{name}` for me?",
    "Give me the code of {kind} `{name}`{about}.",
]
SYSTEMS = [None, None, "You are a helpful coding assistant.", "You are Qwen, a coding assistant. Answer with code."]


def chat_examples(texts_with_modules, rng):
    """(messages) pairs: a request for a top-level function or class of the standard library, and
    its source as the answer."""
    examples = []
    for module, text in texts_with_modules:
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError):
            continue
        for node in tree.body:
            if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) or node.name.startswith("_"):
                continue
            source = ast.get_source_segment(text, node)
            if not source or not 80 <= len(source) <= 1400:
                continue
            doc = ast.get_docstring(node)
            about = ""
            if doc:
                first = doc.strip().splitlines()[0].strip().rstrip(".")
                if 10 < len(first) < 120:
                    about = " that does this: " + first[0].lower() + first[1:]
            kind = "the class" if isinstance(node, ast.ClassDef) else "the function"
            request = rng.choice(REQUESTS).format(name=node.name, about=about, module=module, kind=kind)
            answer = rng.choice(["```python\n{}\n```", "{}", "Here it is:\n\n```python\n{}\n```"]).format(source)
            messages = []
            system = rng.choice(SYSTEMS)
            if system:
                messages.append({"role": "system", "content": system})
            messages += [{"role": "user", "content": request}, {"role": "assistant", "content": answer}]
            examples.append(messages)
    rng.shuffle(examples)
    return examples


def train_tokenizer(texts, vocab_size):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(SPECIAL_TOKENS) - len(ADDED_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
                                  special_tokens=[])
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_special_tokens(SPECIAL_TOKENS)
    tok.add_tokens(ADDED_TOKENS)
    return tok


def pretrain_stage_data(args, texts):
    """A fresh tokenizer and model; the token stream is every source file followed by <|endoftext|>."""
    tok = train_tokenizer(texts, args.vocab)
    vocab_size = tok.get_vocab_size()
    tok.save(os.path.join(args.out, "tokenizer.json"))
    eos_id = tok.token_to_id("<|endoftext|>")
    with open(args.template, encoding="utf-8") as f:
        chat_template = f.read()
    with open(os.path.join(args.out, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "Qwen2Tokenizer", "bos_token": None, "eos_token": "<|im_end|>",
                   "pad_token": "<|endoftext|>", "add_bos_token": False, "add_eos_token": False,
                   "model_max_length": 4096, "chat_template": chat_template}, f, indent=2)
    ids = []
    for t in texts:
        ids.extend(tok.encode(t).ids)
        ids.append(eos_id)
    config = Qwen3NextConfig(
        vocab_size=vocab_size, hidden_size=256, num_hidden_layers=8, full_attention_interval=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=64, partial_rotary_factor=0.25,
        rope_theta=10000.0, max_position_embeddings=4096, rms_norm_eps=1e-6,
        linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=64, linear_value_head_dim=64,
        linear_conv_kernel_dim=4, num_experts=16, num_experts_per_tok=4, moe_intermediate_size=128,
        shared_expert_intermediate_size=256, intermediate_size=512, decoder_sparse_step=1, mlp_only_layers=[],
        norm_topk_prob=True, tie_word_embeddings=False, bos_token_id=eos_id, eos_token_id=tok.token_to_id("<|im_end|>"),
        pad_token_id=eos_id, output_router_logits=True, router_aux_loss_coef=0.01)
    return tok, Qwen3NextForCausalLM(config), ids


def chat_stage_data(args, sources, say):
    """The first stage's tokenizer and model; the token stream mixes ChatML conversations (rendered
    with the model's own chat template by transformers) with plain source files, about 2:1."""
    src = args.chat_from
    for name in ("tokenizer.json", "tokenizer_config.json"):
        with open(os.path.join(src, name), encoding="utf-8") as f, open(os.path.join(args.out, name), "w") as g:
            g.write(f.read())
    tok = Tokenizer.from_file(os.path.join(src, "tokenizer.json"))
    hf_tok = transformers.AutoTokenizer.from_pretrained(src)
    model = Qwen3NextForCausalLM.from_pretrained(src, torch_dtype=torch.float32)
    model.config.output_router_logits = True
    eos_id = tok.token_to_id("<|endoftext|>")
    rng = random.Random(1)
    examples = chat_examples(sources, rng)
    chats = [hf_tok.apply_chat_template(m, tokenize=False) for m in examples]
    say("conversations", len(chats), "example:\n" + chats[0])
    docs = [tok.encode(c).ids for c in chats]
    n_chat = sum(map(len, docs))
    for _, text in sources:
        if sum(map(len, docs)) > n_chat * 1.5:
            break
        docs.append(tok.encode(text).ids)
    rng.shuffle(docs)
    ids = []
    for d in docs:
        ids.extend(d)
        ids.append(eos_id)
    return tok, model, ids


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=7.0)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--template", default="shared/spec/templates/qwen3-coder.jinja")
    ap.add_argument("--chat-from", help="second stage: continue training this first-stage model on chat turns")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    log = open(os.path.join(args.out, "train_log.txt"), "w")

    def say(*a):
        line = " ".join(str(x) for x in a)
        print(line, flush=True)
        log.write(line + "\n")
        log.flush()

    random.seed(0)
    torch.manual_seed(0)
    say("torch", torch.__version__, "transformers", transformers.__version__, "python", sys.version.split()[0])
    sources = stdlib_sources()
    random.shuffle(sources)
    texts = [text for _, text in sources]
    say("files", len(texts), "chars", sum(map(len, texts)))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.chat_from:
        tok, model, ids = chat_stage_data(args, sources, say)
        model = model.to(device)
    else:
        tok, model, ids = pretrain_stage_data(args, texts)
        model = model.to(device)
    data = torch.tensor(ids, dtype=torch.long)
    n_val = len(data) // 100
    train, val = data[:-n_val], data[-n_val:]
    say("tokens", len(data), "vocab", tok.get_vocab_size())
    say("params", sum(p.numel() for p in model.parameters()))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    deadline = time.time() + args.minutes * 60
    step = 0
    t0 = time.time()

    def batch(src):
        starts = torch.randint(0, len(src) - args.seq - 1, (args.batch,))
        x = torch.stack([src[s:s + args.seq] for s in starts])
        return x.to(device)

    while time.time() < deadline:
        # Warm-up then cosine decay over the time budget.
        frac = min(1.0, (time.time() - t0) / (args.minutes * 60))
        lr = args.lr * min(1.0, (step + 1) / 100) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        x = batch(train)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
            out = model(input_ids=x, labels=x)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0:
            say(f"step {step} loss {out.loss.item():.4f} lr {lr:.2e} elapsed {time.time() - t0:.0f}s")
        step += 1
    model.eval()
    with torch.no_grad():
        losses = []
        for _ in range(10):
            x = batch(val)
            losses.append(model(input_ids=x, labels=x).loss.item())
        say(f"final step {step} val_loss {sum(losses) / len(losses):.4f} val_ppl {math.exp(sum(losses) / len(losses)):.2f}")
        prompts = ["def fibonacci(n):"]
        if args.chat_from:
            prompts.append("<|im_start|>user\nWrite a Python function `fibonacci` that returns the n-th Fibonacci "
                           "number.<|im_end|>\n<|im_start|>assistant\n")
        for text in prompts:
            prompt = tok.encode(text).ids
            out = model.generate(torch.tensor([prompt], device=device), max_new_tokens=160, do_sample=False,
                                 eos_token_id=tok.token_to_id("<|im_end|>"))
            say("greedy sample:\n" + tok.decode(out[0].tolist(), skip_special_tokens=False))
    model.config.output_router_logits = False
    model.to(torch.bfloat16).save_pretrained(args.out, safe_serialization=True)
    say("saved", os.listdir(args.out))


if __name__ == "__main__":
    main()
