#!/usr/bin/env python3
"""Goldens of the decoder embedder and decoder reranker modes (tests/decoder_retrieval.rs)
from transformers' own classes on a random-weight Qwen3 checkpoint.

The checkpoint is the one the Rust test builds in memory: `reference::llama::random_checkpoint`
of tests/goldens/qwen3-random-retrieval.config.json with SEED and SCALE, written by
`cargo run --example random_llama_checkpoint` into target/qwen3-random-retrieval/ (never
committed), with the SmolLM2 tokenizer (models/smollm2-135m-instruct) beside it.

- Embeddings: the Qwen3-Embedding recipe (https://huggingface.co/Qwen/Qwen3-Embedding-0.6B):
  token ids with `<|endoftext|>` appended (what that model's tokenizer post-processor does;
  the SmolLM2 tokenizer adds nothing), padding on the left, `Qwen3Model`, the last position's
  hidden state, L2-normalised. Queries take "Instruct: {task}\\nQuery:".
- Reranker: the Qwen3-Reranker recipe (https://huggingface.co/Qwen/Qwen3-Reranker-0.6B):
  prefix + "<Instruct>: ...\\n<Query>: ...\\n<Document>: ..." + suffix, prefix and suffix
  tokenized without special tokens, the text as the card's `tokenizer(pairs)` does (with the
  post-processor's, none for SmolLM2's tokenizer), padding on the left, `Qwen3ForCausalLM`, logits of "no" and "yes"
  at the last position, log_softmax, P(yes).

float32 on the CPU. Usage (from the repository root):
    python3 -m venv target/pyenv && target/pyenv/bin/pip install torch transformers safetensors numpy
    target/pyenv/bin/python scripts/make_decoder_retrieval_goldens.py
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import torch
import transformers
from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM, Qwen3Model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "tests/goldens/qwen3-random-retrieval.config.json")
OUT = os.path.join(ROOT, "tests/goldens/qwen3-random-retrieval.json")
TOKENIZER_DIR = os.path.join(ROOT, "models/smollm2-135m-instruct")
WORK = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "qwen3-random-retrieval")
SEED, SCALE = 16, 0.25

TASK = "Given a web search query, retrieve relevant passages that answer the query"
QUERY_PROMPT = f"Instruct: {TASK}\nQuery:"
TEXTS = [
    "The capital of China is Beijing.",
    "Gravity is a force that attracts two bodies towards each other. It gives weight to physical objects and is responsible for the movement of planets around the sun.",
    "hi",
    "",
    "Zürich liegt am Zürichsee; 東京 is Tokyo. fn main() { println!(\"{}\", 1 + 2); }",
]
QUERIES = ["What is the capital of China?", "Explain gravity"]
PREFIX = '<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
RERANK_QUERY = "What is the capital of China?"
RERANK_DOCS = [
    "The capital of China is Beijing.",
    "Gravity is a force that attracts two bodies towards each other. It gives weight to physical objects and is responsible for the movement of planets around the sun.",
    "Beijing",
    "no",
    "A <Document> with \"quotes\" and yes/no inside.",
]
CUSTOM_INSTRUCTION = "Judge whether the passage names a city"


def left_pad(rows, pad):
    n = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (n - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (n - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


def main():
    subprocess.run(
        ["cargo", "run", "--quiet", "--example", "random_llama_checkpoint", "--", CONFIG, WORK, str(SEED), str(SCALE)],
        cwd=ROOT, check=True,
    )
    for f in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(os.path.join(TOKENIZER_DIR, f), WORK)
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(WORK)
    config_dict = json.load(open(CONFIG))
    config = Qwen3Config.from_pretrained(WORK)
    config._attn_implementation = "eager"

    # --- embeddings ---
    model = Qwen3Model.from_pretrained(WORK, config=config, torch_dtype=torch.float32).eval()
    eos = tok.convert_tokens_to_ids("<|endoftext|>")

    def embed(texts):
        rows = [tok(t, add_special_tokens=True)["input_ids"] + [eos] for t in texts]
        ids, mask = left_pad(rows, eos)
        with torch.no_grad():
            h = model(input_ids=ids, attention_mask=mask).last_hidden_state[:, -1]
            single = torch.stack([model(input_ids=torch.tensor([r])).last_hidden_state[0, -1] for r in rows])
        # Left padding shifts RoPE positions, which attention only sees as differences.
        print(f"left-padded vs unpadded max |diff| {float((h - single).abs().max()):.3g}", file=sys.stderr)
        e = torch.nn.functional.normalize(h, p=2, dim=1)
        return rows, e.numpy()

    embeddings = []
    rows, e = embed(TEXTS)
    embeddings.append({"prompt_name": None, "texts": TEXTS, "input_ids": rows, "embeddings": e.tolist()})
    rows, e = embed([QUERY_PROMPT + q for q in QUERIES])
    embeddings.append({"prompt_name": "query", "texts": QUERIES, "input_ids": rows, "embeddings": e.tolist()})

    # --- reranker ---
    lm = Qwen3ForCausalLM.from_pretrained(WORK, config=config, torch_dtype=torch.float32).eval()
    no_id, yes_id = tok.convert_tokens_to_ids("no"), tok.convert_tokens_to_ids("yes")
    prefix = tok.encode(PREFIX, add_special_tokens=False)
    suffix = tok.encode(SUFFIX, add_special_tokens=False)

    def rerank(instruction, query, docs):
        rows = [
            prefix + tok(f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {d}")["input_ids"] + suffix
            for d in docs
        ]
        ids, mask = left_pad(rows, eos)
        with torch.no_grad():
            logits = lm(input_ids=ids, attention_mask=mask).logits[:, -1, :]
        pair = torch.stack([logits[:, no_id], logits[:, yes_id]], dim=1)
        logp = torch.nn.functional.log_softmax(pair, dim=1)
        return [
            {"document": d, "input_ids": r, "logit_no": float(pair[i, 0]), "logit_yes": float(pair[i, 1]),
             "logit": float(pair[i, 1] - pair[i, 0]), "score": float(logp[i, 1].exp())}
            for i, (d, r) in enumerate(zip(docs, rows))
        ]

    reranks = [
        {"instruction": None, "query": RERANK_QUERY, "pairs": rerank(TASK, RERANK_QUERY, RERANK_DOCS)},
        {"instruction": CUSTOM_INSTRUCTION, "query": RERANK_QUERY, "pairs": rerank(CUSTOM_INSTRUCTION, RERANK_QUERY, RERANK_DOCS[:3])},
    ]
    for r in reranks:
        r["ranking_by_logit"] = sorted(range(len(r["pairs"])), key=lambda i: (-r["pairs"][i]["logit"], i))

    out = {
        "about": "scripts/make_decoder_retrieval_goldens.py: transformers Qwen3Model / Qwen3ForCausalLM, float32 CPU, "
                 "on reference::llama::random_checkpoint(config, seed, scale) with the SmolLM2 tokenizer",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "seed": SEED,
        "scale": SCALE,
        "config": config_dict,
        "eos_id": eos,
        "no_id": no_id,
        "yes_id": yes_id,
        "query_prompt": QUERY_PROMPT,
        "embeddings": embeddings,
        "reranks": reranks,
    }
    with open(OUT, "w") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
