#!/usr/bin/env python3
"""Trains moeserve's bundled demo model: a small qwen3next (Gated DeltaNet + gated attention + MoE)
language model on the Python standard library's sources, with its own byte-level BPE tokenizer.

Runs on a machine with torch, transformers (with Qwen3Next) and tokenizers, ideally a GPU:
    python3 tools/demo_model/train_demo_model.py --out DIR [--minutes 7]
Writes DIR/model.safetensors (bf16), config.json, tokenizer.json, tokenizer_config.json (with the
Qwen3-Coder chat template), generation_config.json and train_log.txt. Convert with
`moeserve convert DIR -o model.gguf` (see tools/demo_model/README.md).
"""
import argparse
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
            texts.append(text)
    return texts


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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=7.0)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--template", default="shared/spec/templates/qwen3-coder.jinja")
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
    texts = stdlib_sources()
    random.shuffle(texts)
    say("files", len(texts), "chars", sum(map(len, texts)))
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
    data = torch.tensor(ids, dtype=torch.long)
    n_val = len(data) // 100
    train, val = data[:-n_val], data[-n_val:]
    say("tokens", len(data), "vocab", vocab_size)

    config = Qwen3NextConfig(
        vocab_size=vocab_size, hidden_size=256, num_hidden_layers=8, full_attention_interval=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=64, partial_rotary_factor=0.25,
        rope_theta=10000.0, max_position_embeddings=4096, rms_norm_eps=1e-6,
        linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=64, linear_value_head_dim=64,
        linear_conv_kernel_dim=4, num_experts=16, num_experts_per_tok=4, moe_intermediate_size=128,
        shared_expert_intermediate_size=256, intermediate_size=512, decoder_sparse_step=1, mlp_only_layers=[],
        norm_topk_prob=True, tie_word_embeddings=False, bos_token_id=eos_id, eos_token_id=tok.token_to_id("<|im_end|>"),
        pad_token_id=eos_id, output_router_logits=True, router_aux_loss_coef=0.01)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = Qwen3NextForCausalLM(config).to(device)
    say("params", sum(p.numel() for p in model.parameters()))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    deadline = time.time() + args.minutes * 60
    est_steps = 100000
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
        prompt = tok.encode("def fibonacci(n):").ids
        out = model.generate(torch.tensor([prompt], device=device), max_new_tokens=80, do_sample=False)
        say("greedy sample:\n" + tok.decode(out[0].tolist()))
    model.config.output_router_logits = False
    model.to(torch.bfloat16).save_pretrained(args.out, safe_serialization=True)
    say("saved", os.listdir(args.out))


if __name__ == "__main__":
    main()
