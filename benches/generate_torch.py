"""PyTorch baseline for benches/generate.rs: transformers `generate` (eager, greedy) on CUDA
with random weights from the same configs (`from_config`), fp32 and fp16, the same prompt
length and number of new tokens (EOS ignored).
    python3 benches/generate_torch.py DIR...   (each DIR holds config.json)
Env: GLLM_GEN_PROMPT (512), GLLM_GEN_NEW (128), GLLM_TORCH_DTYPES (f32,f16).
"""
import os, statistics, sys, time

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM

P = int(os.environ.get("GLLM_GEN_PROMPT", 512))
N = int(os.environ.get("GLLM_GEN_NEW", 128))
print(f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.cuda.get_device_name()}; prompt {P}, new {N}")
print("\n| model (random weights) | dtype | attention | prefill tok/s | decode tok/s | ms/token |\n|---|---|---|---|---|---|")


def sync_time(f):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    f()
    torch.cuda.synchronize()
    return time.perf_counter() - t0


for d in sys.argv[1:]:
    name = os.path.basename(os.path.normpath(d))
    for dtype, label in [(torch.float32, "f32"), (torch.float16, "f16")]:
        if label not in os.environ.get("GLLM_TORCH_DTYPES", "f32,f16").split(","):
            continue
        cfg = AutoConfig.from_pretrained(d)
        torch.manual_seed(0)
        with torch.device("cuda"):
            model = AutoModelForCausalLM.from_config(cfg, torch_dtype=dtype, attn_implementation="eager").eval()
        g = torch.Generator(device="cuda").manual_seed(0)
        ids = torch.randint(0, cfg.vocab_size, (1, P), device="cuda", generator=g)
        mask = torch.ones_like(ids)
        kw = dict(max_new_tokens=N, min_new_tokens=N, do_sample=False, eos_token_id=None, pad_token_id=0, attention_mask=mask)
        with torch.inference_mode():
            model.generate(ids, **dict(kw, max_new_tokens=4, min_new_tokens=4))
            pre = statistics.median(sync_time(lambda: model(ids, attention_mask=mask, use_cache=True)) for _ in range(5))
            gen = statistics.median(sync_time(lambda: model.generate(ids, **kw)) for _ in range(3))
        per_tok = (gen - pre) / (N - 1)
        print(f"| torch {name} | {label} | eager | {P / pre:.0f} | {1 / per_tok:.1f} | {per_tok * 1e3:.3f} |", flush=True)
        del model
        torch.cuda.empty_cache()
