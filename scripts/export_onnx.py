"""Writes an ONNX export of a BERT checkpoint (all-MiniLM-L6-v2) for transformers.js, built
directly from model.safetensors with the `onnx` package (no torch needed), and checks it
against the committed goldens with onnxruntime.

    python scripts/export_onnx.py MODEL_DIR OUT_DIR [GOLDENS_JSON]
    python scripts/export_onnx.py --q8 MODEL_DIR OUT_DIR [GOLDENS_JSON]   (only the q8 file,
                                                                          from an existing export)

OUT_DIR receives the layout transformers.js reads: config.json, tokenizer.json,
tokenizer_config.json, special_tokens_map.json, onnx/model.onnx (fp32) and
onnx/model_quantized.onnx (q8, transformers.js's default dtype on its wasm device; see
quantize_q8). The fp32 graph is
HF's BertModel (modeling_bert.py) with inputs input_ids, attention_mask, token_type_ids
(int64 [batch, seq]) and output last_hidden_state (f32 [batch, seq, hidden]): embeddings
(word + position + token type, LayerNorm), then per layer self-attention (scaled dot
product with the additive mask), output dense + residual + LayerNorm, intermediate dense +
GELU (erf), output dense + residual + LayerNorm. The same weights as gllm-web reads, so the
side-by-side benchmark compares code, not checkpoints. Generated output, never committed.
"""

import json
import math
import os
import shutil
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file


def build(weights, cfg):
    H = cfg["hidden_size"]
    nh = cfg["num_attention_heads"]
    hd = H // nh
    eps = cfg.get("layer_norm_eps", 1e-12)
    nodes, inits = [], []
    counter = [0]

    def name(base):
        counter[0] += 1
        return f"{base}_{counter[0]}"

    def init(n, arr):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), n))
        return n

    def node(op, inputs, **attrs):
        out = name(op.lower())
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def w(key):
        return weights[key].astype(np.float32)

    def linear(x, prefix):
        wt = init(prefix + ".weight_t", w(prefix + ".weight").T)  # [in, out]
        b = init(prefix + ".bias", w(prefix + ".bias"))
        return node("Add", [node("MatMul", [x, wt]), b])

    def layer_norm(x, prefix):
        g = init(prefix + ".weight", w(prefix + ".weight"))
        b = init(prefix + ".bias", w(prefix + ".bias"))
        return node("LayerNormalization", [x, g, b], axis=-1, epsilon=eps)

    # Embeddings.
    e = "embeddings"
    word = node("Gather", [init(e + ".word", w(e + ".word_embeddings.weight")), "input_ids"])
    # position_ids = arange(seq): the first seq rows of the position table.
    seq = node("Slice", [node("Shape", ["input_ids"]), init("one_1d", np.array([1], dtype=np.int64)), init("two_1d", np.array([2], dtype=np.int64))])
    pos = node("Slice", [init(e + ".pos", w(e + ".position_embeddings.weight")), init("zero_1d", np.array([0], dtype=np.int64)), seq, init("zero_axis", np.array([0], dtype=np.int64))])
    typ = node("Gather", [init(e + ".type", w(e + ".token_type_embeddings.weight")), "token_type_ids"])
    x = layer_norm(node("Add", [node("Add", [word, typ]), pos]), e + ".LayerNorm")

    # Additive mask [batch, 1, 1, seq]: 0 where attended, a large negative value elsewhere.
    m = node("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    m = node("Mul", [node("Sub", [init("one_f", np.array(1.0, dtype=np.float32)), m]), init("neg", np.array(-3.4028234663852886e38, dtype=np.float32))])
    mask = node("Unsqueeze", [m, init("axes12", np.array([1, 2], dtype=np.int64))])

    heads_shape = init("heads_shape", np.array([0, 0, nh, hd], dtype=np.int64))
    merge_shape = init("merge_shape", np.array([0, 0, H], dtype=np.int64))
    scale = init("scale", np.array(1.0 / math.sqrt(hd), dtype=np.float32))
    half = init("half", np.array(0.5, dtype=np.float32))
    one = init("one_g", np.array(1.0, dtype=np.float32))
    rsqrt2 = init("rsqrt2", np.array(1.0 / math.sqrt(2.0), dtype=np.float32))

    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        a = p + ".attention.self"
        q = node("Transpose", [node("Reshape", [linear(x, a + ".query"), heads_shape])], perm=[0, 2, 1, 3])
        k = node("Transpose", [node("Reshape", [linear(x, a + ".key"), heads_shape])], perm=[0, 2, 3, 1])
        v = node("Transpose", [node("Reshape", [linear(x, a + ".value"), heads_shape])], perm=[0, 2, 1, 3])
        scores = node("Add", [node("Mul", [node("MatMul", [q, k]), scale]), mask])
        probs = node("Softmax", [scores], axis=-1)
        ctx = node("Reshape", [node("Transpose", [node("MatMul", [probs, v])], perm=[0, 2, 1, 3]), merge_shape])
        x = layer_norm(node("Add", [linear(ctx, p + ".attention.output.dense"), x]), p + ".attention.output.LayerNorm")
        h = linear(x, p + ".intermediate.dense")
        h = node("Mul", [node("Mul", [h, half]), node("Add", [node("Erf", [node("Mul", [h, rsqrt2])]), one])])
        x = layer_norm(node("Add", [linear(h, p + ".output.dense"), x]), p + ".output.LayerNorm")

    nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"]))
    ints = lambda n: helper.make_tensor_value_info(n, TensorProto.INT64, ["batch_size", "sequence_length"])
    graph = helper.make_graph(
        nodes,
        "bert",
        [ints("input_ids"), ints("attention_mask"), ints("token_type_ids")],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch_size", "sequence_length", H])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="gllm-web scripts/export_onnx.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def check(path, model_dir, goldens):
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    g = json.load(open(goldens))
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    texts = [s["text"] for s in g["sentences"]]
    encs = [tok.encode(t) for t in texts]
    n = max(len(e.ids) for e in encs)
    ids = np.zeros((len(texts), n), np.int64)
    mask = np.zeros((len(texts), n), np.int64)
    for i, e in enumerate(encs):
        ids[i, : len(e.ids)] = e.ids
        mask[i, : len(e.ids)] = 1
    (h,) = sess.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
    worst = 0.0
    for i, s in enumerate(g["sentences"]):
        m = mask[i].astype(np.float32)[:, None]
        v = (h[i] * m).sum(0) / m.sum()
        v = v / max(np.linalg.norm(v), 1e-12)
        worst = max(worst, float(np.abs(v - np.array(s["embedding"], np.float32)).max()))
    print(f"onnx export vs goldens ({len(texts)} sentences, padded batch): max |diff| = {worst:.2e}")
    if worst > 1e-4:
        sys.exit("ONNX export does not match the goldens")


def quantize_q8(fp32_path, q8_path):
    """Writes the q8 variant the way transformers.js's own scripts/quantize.py (mode q8, its
    defaults) makes the model_quantized.onnx files of the Xenova / onnx-community repos:
    onnxruntime's dynamic quantization (QuantizationMode.IntegerOps: MatMul with a constant B
    becomes DynamicQuantizeLinear + MatMulInteger, the embedding Gathers get uint8/int8
    tables), weights QInt8 (signed; that script picks QUInt8 only for graphs with Conv or
    onnxruntime-genai attention ops, none here), activations QUInt8 (the only dynamic choice),
    per_channel=False, reduce_range=False, MatMulConstBOnly=True (the attention score and
    context MatMuls stay fp32), EnableSubgraph=True."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        fp32_path,
        q8_path,
        per_channel=False,
        reduce_range=False,
        weight_type=QuantType.QInt8,
        extra_options={"EnableSubgraph": True, "MatMulConstBOnly": True},
    )
    print(f"wrote {q8_path} ({os.path.getsize(q8_path) / 1e6:.1f} MB; dynamic q8: QInt8 weights, per-tensor)")


def check_q8(path, model_dir, goldens):
    """The q8 file is lossy: reports max |diff| and the minimum cosine against the goldens,
    and fails only if it is broken (cosine < 0.9). Measured: min cosine 0.963 on the 4
    goldens (per-tensor int8 weights cost that much on this model; per_channel=True would
    give about 0.99, but that is not what transformers.js's q8 recipe does)."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    g = json.load(open(goldens))
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    worst, worst_cos = 0.0, 1.0
    for s in g["sentences"]:
        e = tok.encode(s["text"])
        ids = np.array([e.ids], np.int64)
        (h,) = sess.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)})
        v = h[0].mean(0)
        v = v / max(np.linalg.norm(v), 1e-12)
        ref = np.array(s["embedding"], np.float32)
        worst = max(worst, float(np.abs(v - ref).max()))
        worst_cos = min(worst_cos, float(v @ ref / np.linalg.norm(ref)))
    print(f"q8 export vs goldens ({len(g['sentences'])} sentences): max |diff| = {worst:.2e}, min cosine = {worst_cos:.6f}")
    if worst_cos < 0.9:
        sys.exit("q8 ONNX export is too far from the goldens")


def main():
    q8_only = sys.argv[1] == "--q8"
    args = sys.argv[2:] if q8_only else sys.argv[1:]
    model_dir, out = args[0], args[1]
    goldens = args[2] if len(args) > 2 else None
    path = os.path.join(out, "onnx", "model.onnx")
    q8_path = os.path.join(out, "onnx", "model_quantized.onnx")
    if q8_only:
        quantize_q8(path, q8_path)
        if goldens:
            check_q8(q8_path, model_dir, goldens)
        return
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    weights = load_file(os.path.join(model_dir, "model.safetensors"))
    weights = {k.removeprefix("bert."): v for k, v in weights.items()}
    os.makedirs(os.path.join(out, "onnx"), exist_ok=True)
    onnx.save(build(weights, cfg), path)
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]:
        if os.path.exists(os.path.join(model_dir, f)):
            shutil.copy(os.path.join(model_dir, f), os.path.join(out, f))
    print(f"wrote {path} ({os.path.getsize(path) / 1e6:.1f} MB)")
    if goldens:
        check(path, model_dir, goldens)
    quantize_q8(path, q8_path)
    if goldens:
        check_q8(q8_path, model_dir, goldens)


if __name__ == "__main__":
    main()
