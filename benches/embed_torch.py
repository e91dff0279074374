"""PyTorch reference for benches/embed.rs: sentence-transformers on CUDA, fp32 and fp16,
random weights from the same config, the same sentences, batch 1 and batch 32.
    python3 benches/embed_torch.py MODEL_DIR   (config.json + tokenizer.json; for a Gemma 3
    folder such as EmbeddingGemma also modules.json and the Dense modules' config.json)
"""
import json, os, statistics, sys, tempfile, time

import torch
from sentence_transformers import SentenceTransformer, models
from transformers import AutoConfig, AutoModel, AutoTokenizer, BertConfig, BertModel, BertTokenizerFast

d = sys.argv[1]
def sentence(i):
    return f"Sentence number {i} talks about GPUs, browsers and the quick brown fox that jumps over the lazy dog today, as it does every morning."

tmp = tempfile.mkdtemp()
torch.manual_seed(0)
cfg = json.load(open(f"{d}/config.json"))
if cfg.get("model_type") == "gemma3_text":
    # EmbeddingGemma: the bidirectional Gemma 3 trunk, mean pooling, the folder's Dense
    # modules (identity activation), L2 normalisation, as its modules.json lists them.
    AutoModel.from_config(AutoConfig.from_pretrained(d)).save_pretrained(tmp)
    AutoTokenizer.from_pretrained(d).save_pretrained(tmp)
    word = models.Transformer(tmp, max_seq_length=2048)
    mods = [word, models.Pooling(word.get_word_embedding_dimension(), "mean")]
    for m in json.load(open(f"{d}/modules.json")):
        if m["type"].endswith(".Dense"):
            dc = json.load(open(f"{d}/{m['path']}/config.json"))
            mods.append(models.Dense(dc["in_features"], dc["out_features"], bias=dc.get("bias", True), activation_function=torch.nn.Identity()))
    mods.append(models.Normalize())
else:
    BertModel(BertConfig.from_json_file(f"{d}/config.json")).save_pretrained(tmp)
    BertTokenizerFast(tokenizer_file=f"{d}/tokenizer.json").save_pretrained(tmp)
    word = models.Transformer(tmp, max_seq_length=256)
    mods = [word, models.Pooling(word.get_word_embedding_dimension(), "mean"), models.Normalize()]
st = SentenceTransformer(modules=mods, device="cuda")
texts = [sentence(i) for i in range(32)]
attn = getattr(word.auto_model.config, "_attn_implementation", "?")
print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}; {os.path.basename(os.path.normpath(d))} config, attention {attn}; sentence 0 has {len(st.tokenize([texts[0]])['input_ids'][0])} tokens")
print("\n| bench | median time/call | embeddings/s |\n|---|---|---|")
for dtype in ["fp32", "fp16"]:
    if dtype == "fp16":
        st.half()
    for batch in [1, 32]:
        samples = []
        for r in range(35):
            t0 = time.perf_counter()
            st.encode(texts[:batch], batch_size=batch, convert_to_numpy=True)
            if r >= 5:
                samples.append(time.perf_counter() - t0)
        s = statistics.median(samples)
        print(f"| sentence-transformers CUDA {dtype} batch={batch} | {s * 1e3:.2f} ms | {batch / s:.0f} |")
