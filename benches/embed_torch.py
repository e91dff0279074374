"""PyTorch reference for benches/embed.rs: sentence-transformers on CUDA, fp32 and fp16,
random weights from the same config, the same sentences, batch 1 and batch 32.
    python3 benches/embed_torch.py MODEL_DIR   (config.json + tokenizer.json)
"""
import statistics, sys, tempfile, time

import torch
from sentence_transformers import SentenceTransformer, models
from transformers import BertConfig, BertModel, BertTokenizerFast

d = sys.argv[1]
def sentence(i):
    return f"Sentence number {i} talks about GPUs, browsers and the quick brown fox that jumps over the lazy dog today, as it does every morning."

tmp = tempfile.mkdtemp()
torch.manual_seed(0)
BertModel(BertConfig.from_json_file(f"{d}/config.json")).save_pretrained(tmp)
BertTokenizerFast(tokenizer_file=f"{d}/tokenizer.json").save_pretrained(tmp)
word = models.Transformer(tmp, max_seq_length=256)
st = SentenceTransformer(modules=[word, models.Pooling(word.get_word_embedding_dimension(), "mean"), models.Normalize()], device="cuda")
texts = [sentence(i) for i in range(32)]
print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}; sentence 0 has {len(st.tokenize([texts[0]])['input_ids'][0])} tokens")
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
