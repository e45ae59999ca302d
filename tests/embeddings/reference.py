"""An independent all-MiniLM-L6-v2 for checking Leitwerk's candle embeddings.

Written for Leitwerk's tests from the published architecture (BERT, mean pooling over the
attention mask, L2 normalisation, as sentence-transformers computes it). It shares nothing
with the Rust code: the word pieces come from vocab.txt with BERT's basic tokenizer and greedy
longest-match WordPiece written here, the weights are read from model.safetensors by hand,
and the encoder runs in numpy (float64), one sentence at a time (no padding).

usage: python reference.py MODEL_DIR < sentences.txt > reference.json
Output: {"ids": [[...], ...], "vectors": [[...], ...]}, one entry per input line.
"""

import json
import struct
import sys
import unicodedata

import numpy as np

MAX_WORD_PIECES = 256


def load_weights(path):
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
        data = f.read()
    out = {}
    for name, meta in header.items():
        if name == "__metadata__" or meta["dtype"] != "F32":
            continue
        start, end = meta["data_offsets"]
        out[name] = np.frombuffer(data[start:end], dtype="<f4").reshape(meta["shape"]).astype(np.float64)
    return out


def is_punctuation(ch):
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def is_cjk(cp):
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def basic_tokens(text):
    cleaned = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or (unicodedata.category(ch).startswith("C") and ch not in "\t\n\r"):
            continue
        if ch in " \t\n\r" or unicodedata.category(ch) == "Zs":
            cleaned.append(" ")
        elif is_cjk(cp):
            cleaned.append(f" {ch} ")
        else:
            cleaned.append(ch)
    text = "".join(cleaned).lower()
    text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
    tokens = []
    for word in text.split():
        current = ""
        for ch in word:
            if is_punctuation(ch):
                if current:
                    tokens.append(current)
                    current = ""
                tokens.append(ch)
            else:
                current += ch
        if current:
            tokens.append(current)
    return tokens


def word_pieces(text, vocab):
    out = []
    for token in basic_tokens(text):
        if len(token) > 100:
            out.append(vocab["[UNK]"])
            continue
        pieces, start = [], 0
        while start < len(token):
            end, found = len(token), None
            while start < end:
                piece = token[start:end] if start == 0 else "##" + token[start:end]
                if piece in vocab:
                    found = piece
                    break
                end -= 1
            if found is None:
                pieces = [vocab["[UNK]"]]
                break
            pieces.append(vocab[found])
            start = end
        out.extend(pieces)
    return [vocab["[CLS]"]] + out[: MAX_WORD_PIECES - 2] + [vocab["[SEP]"]]


def layer_norm(x, weight, bias, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def erf(x):
    # numpy has no erf; math.erf per element is exact to double precision.
    from math import erf as scalar_erf
    return np.vectorize(scalar_erf, otypes=[np.float64])(x)


def gelu(x):
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def encode(ids, w, heads=12, layers=6):
    n = len(ids)
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n] \
        + w["embeddings.token_type_embeddings.weight"][0]
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
    d = x.shape[1] // heads
    for i in range(layers):
        p = f"encoder.layer.{i}."
        lin = lambda v, name: v @ w[p + name + ".weight"].T + w[p + name + ".bias"]
        q = lin(x, "attention.self.query").reshape(n, heads, d).transpose(1, 0, 2)
        k = lin(x, "attention.self.key").reshape(n, heads, d).transpose(1, 0, 2)
        v = lin(x, "attention.self.value").reshape(n, heads, d).transpose(1, 0, 2)
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(d)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        attn = (scores / scores.sum(-1, keepdims=True)) @ v
        attn = attn.transpose(1, 0, 2).reshape(n, heads * d)
        x = layer_norm(lin(attn, "attention.output.dense") + x,
                       w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"])
        h = gelu(lin(x, "intermediate.dense"))
        x = layer_norm(lin(h, "output.dense") + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
    mean = x.mean(0)
    return mean / np.linalg.norm(mean)


def main():
    model_dir = sys.argv[1]
    with open(f"{model_dir}/vocab.txt", encoding="utf-8") as f:
        vocab = {line.rstrip("\n"): i for i, line in enumerate(f)}
    weights = load_weights(f"{model_dir}/model.safetensors")
    ids, vectors = [], []
    for line in sys.stdin.read().split("\n"):
        if not line:
            continue
        pieces = word_pieces(line, vocab)
        ids.append(pieces)
        vectors.append([float(v) for v in encode(pieces, weights)])
    json.dump({"ids": ids, "vectors": vectors}, sys.stdout)


if __name__ == "__main__":
    main()
