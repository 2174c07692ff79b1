#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""vLLM's prefix-caching block hashes, as a reference for kvmm's.

vLLM (vllm/v1/core/kv_cache_utils.py, vllm/utils/hashing.py):
    NONE_HASH = sha256_cbor(os.environ["PYTHONHASHSEED"])
    hash_block_tokens(h, parent, tokens, extra) = h((parent or NONE_HASH, tuple(tokens), extra))
    sha256_cbor(x) = hashlib.sha256(cbor2.dumps(x, canonical=True)).digest()

This file encodes CBOR by hand (the types vLLM's hash needs) and, where the
cbor2 module is installed, checks each encoding against cbor2's canonical
one as well. Input, one JSON object a line on stdin:
    {"seed": "0", "block": 16, "tokens": [...], "extra": null | [strings]}
Output, one line each: the none hash, then each full block's hash, in hex.
"""
import hashlib
import json
import sys

try:
    import cbor2
except ImportError:
    cbor2 = None


def head(major, v):
    if v < 24:
        return bytes([major << 5 | v])
    for ai, n in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if v < 1 << (8 * n):
            return bytes([major << 5 | ai]) + v.to_bytes(n, "big")
    raise ValueError("too large")


def enc(x):
    if x is None:
        return b"\xf6"
    if isinstance(x, bool):
        return b"\xf5" if x else b"\xf4"
    if isinstance(x, int):
        return head(0, x) if x >= 0 else head(1, -1 - x)
    if isinstance(x, bytes):
        return head(2, len(x)) + x
    if isinstance(x, str):
        b = x.encode()
        return head(3, len(b)) + b
    if isinstance(x, (list, tuple)):
        return head(4, len(x)) + b"".join(enc(e) for e in x)
    raise TypeError(type(x))


def sha256_cbor(x):
    b = enc(x)
    if cbor2 is not None and cbor2.dumps(x, canonical=True) != b:
        sys.exit("cbor2 disagrees with the hand encoding of %r" % (x,))
    return hashlib.sha256(b).digest()


def main():
    for line in sys.stdin:
        req = json.loads(line)
        none = sha256_cbor(req["seed"])
        print(none.hex())
        extra = tuple(req["extra"]) if req.get("extra") is not None else None
        parent, toks, bs = none, req["tokens"], req["block"]
        for i in range(len(toks) // bs):
            parent = sha256_cbor((parent, tuple(toks[i * bs:(i + 1) * bs]), extra))
            print(parent.hex())
    print("cbor2" if cbor2 is not None else "hand", file=sys.stderr)


if __name__ == "__main__":
    main()
