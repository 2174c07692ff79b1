#!/usr/bin/python3
# Writes a GGUF model llama.cpp loads: Llama architecture, seeded random f16
# weights, the llama-spm vocabulary (32000 tokens) copied from llama.cpp's
# models/ggml-vocab-llama-spm.gguf. The shape gives 8 KiB of KV per token
# (8 layers x K,V x 4 KV heads x 64 x f16), the order of small real models
# (Qwen2.5-0.5B: 12 KiB, TinyLlama-1.1B: 22 KiB), so a 128k context is 1 GiB
# of KV cache.
#   make-model.py LLAMA_SRC OUT.gguf [--seed N]
import argparse
import os
import sys

import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("src", help="llama.cpp source tree (for gguf-py and the vocabulary)")
ap.add_argument("out")
ap.add_argument("--seed", type=int, default=1234)
a = ap.parse_args()
sys.path.insert(0, os.path.join(a.src, "gguf-py"))
import gguf  # noqa: E402

N_LAYER, N_EMBD, N_HEAD, N_HEAD_KV, N_FF, N_CTX = 8, 512, 8, 4, 1408, 131072
HEAD_DIM = N_EMBD // N_HEAD

vocab = gguf.GGUFReader(os.path.join(a.src, "models", "ggml-vocab-llama-spm.gguf"))


def field(name):
    f = vocab.fields[name]
    return f


def scalar(name):
    f = field(name)
    return f.parts[f.data[0]][0]


def strings(name):
    f = field(name)
    return [bytes(f.parts[i]) for i in f.data]


def array(name):
    f = field(name)
    return [f.parts[i][0] for i in f.data]


tokens = strings("tokenizer.ggml.tokens")
n_vocab = len(tokens)
w = gguf.GGUFWriter(a.out + ".tmp", "llama")
w.add_name("kvmm-test-llama")
w.add_block_count(N_LAYER)
w.add_context_length(N_CTX)
w.add_embedding_length(N_EMBD)
w.add_feed_forward_length(N_FF)
w.add_head_count(N_HEAD)
w.add_head_count_kv(N_HEAD_KV)
w.add_layer_norm_rms_eps(1e-5)
w.add_rope_dimension_count(HEAD_DIM)
w.add_rope_freq_base(10000.0)
w.add_vocab_size(n_vocab)
w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
w.add_tokenizer_model("llama")
w.add_tokenizer_pre("default")
w.add_token_list(tokens)
w.add_token_scores([float(x) for x in array("tokenizer.ggml.scores")])
w.add_token_types([int(x) for x in array("tokenizer.ggml.token_type")])
w.add_bos_token_id(int(scalar("tokenizer.ggml.bos_token_id")))
w.add_eos_token_id(int(scalar("tokenizer.ggml.eos_token_id")))
w.add_unk_token_id(int(scalar("tokenizer.ggml.unknown_token_id")))
w.add_add_bos_token(True)
w.add_add_eos_token(False)

rng = np.random.default_rng(a.seed)


def t(name, *shape, scale=None, ones=False):
    # gguf-py takes numpy shapes (rows last-dim-first as llama.cpp reads them)
    if ones:
        arr = np.ones(shape, dtype=np.float32)
    else:
        s = scale if scale is not None else 1.0 / np.sqrt(shape[-1])
        arr = (rng.standard_normal(shape, dtype=np.float32) * s).astype(np.float16)
    w.add_tensor(name, arr)


t("token_embd.weight", n_vocab, N_EMBD, scale=1.0)
for i in range(N_LAYER):
    p = f"blk.{i}."
    t(p + "attn_norm.weight", N_EMBD, ones=True)
    t(p + "attn_q.weight", N_EMBD, N_EMBD)
    t(p + "attn_k.weight", N_HEAD_KV * HEAD_DIM, N_EMBD)
    t(p + "attn_v.weight", N_HEAD_KV * HEAD_DIM, N_EMBD)
    t(p + "attn_output.weight", N_EMBD, N_EMBD)
    t(p + "ffn_norm.weight", N_EMBD, ones=True)
    t(p + "ffn_gate.weight", N_FF, N_EMBD)
    t(p + "ffn_up.weight", N_FF, N_EMBD)
    t(p + "ffn_down.weight", N_EMBD, N_FF)
t("output_norm.weight", N_EMBD, ones=True)
t("output.weight", n_vocab, N_EMBD)

w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
os.replace(a.out + ".tmp", a.out)
print(a.out)
