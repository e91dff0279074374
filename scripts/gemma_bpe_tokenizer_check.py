#!/usr/bin/env python3
"""Does a BPE built from the gemma-3-270m GGUF's scores segment as Gemma's own tokenizer?

    target/gemma270-venv/bin/python scripts/gemma_bpe_tokenizer_check.py

(the venv of scripts/make_gemma270_goldens.py; needs models/gguf/gemma-3-270m-q4_k_m.gguf and,
as the reference, models/embeddinggemma-300m/tokenizer.json: Gemma 3's BPE tokenizer over the
same 262,144 pieces). The merges are every split (a, b) of a normal piece into two pieces,
ranked by the whole piece's score (as transformers' `GGUFTokenizerSkeleton` builds merges for
llama files, and as llama.cpp's SPM tokenizer merges by score); byte fallback; spaces as `▁`;
control and user-defined pieces as special tokens. Prints the texts where the ids differ.
Measured 2026-12-07: 9 of 9 texts equal (the four golden prompts, chat included, and five
more: German, Japanese, code with an emoji, tabs and runs of spaces, accents and byte-fallback
characters), 513,511 merges. transformers' own GGUF tokenizer (Unigram, which the goldens
and gllm use) differs on 8 of the 9 (it needs 10 ids for "The capital of France is" against
5, 1741 against 833 for the long golden text); only the Japanese sentence agrees.
"""
import json
from gguf import GGUFReader
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, decoders, AddedToken
r = GGUFReader("models/gguf/gemma-3-270m-q4_k_m.gguf")
f = r.fields
toks = [bytes(f["tokenizer.ggml.tokens"].parts[i]).decode() for i in f["tokenizer.ggml.tokens"].data]
scores = [float(f["tokenizer.ggml.scores"].parts[i][0]) for i in f["tokenizer.ggml.scores"].data]
types = [int(f["tokenizer.ggml.token_type"].parts[i][0]) for i in f["tokenizer.ggml.token_type"].data]
vocab = {t: i for i, t in enumerate(toks)}
merges = []
for t, s, ty in zip(toks, scores, types):
    if ty != 1: continue
    for k in range(1, len(t)):
        a, b = t[:k], t[k:]
        if a in vocab and b in vocab:
            merges.append((s, vocab[a], vocab[b], a, b))
merges.sort(key=lambda m: (-m[0], m[1], m[2]))
bpe = models.BPE(vocab, [(m[3], m[4]) for m in merges], byte_fallback=True, unk_token="<unk>", fuse_unk=True)
tk = Tokenizer(bpe)
tk.normalizer = normalizers.Replace(" ", "▁")
tk.add_special_tokens([AddedToken(x, special=True, normalized=False) for x, ty in zip(toks, types) if ty in (3, 4)])
ref = Tokenizer.from_file("models/embeddinggemma-300m/tokenizer.json")
d = json.load(open("tests/goldens/gemma-3-270m.json"))
texts = [c["prompt"] for c in d["cases"]] + ["Der Eiffelturm steht in Paris.", "東京は日本の首都です。", "fn main() { println!(\"hi\"); } // 🦀", "  two   three\ttab\n\nnew", "naïve café résumé 𝔘𝔫𝔦"]
same = 0
for t in texts:
    a = tk.encode(t).ids; b = ref.encode(t, add_special_tokens=False).ids
    same += a == b
    if a != b: print("DIFF", repr(t[:40]), a[:12], b[:12])
print(f"{same}/{len(texts)} equal; merges {len(merges)}")
