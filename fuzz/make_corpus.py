#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz harnesses into fuzz/corpus/<name>/ (small files, standard
library only). Run once; the files are in the repository. Rerunning rewrites the same bytes."""
import json, os, struct

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(here)


def put(name, file, data):
    d = os.path.join(here, "corpus", name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, file), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def npy(descr, shape, payload, version=1, fortran=False):
    h = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (descr, "True" if fortran else "False",
                                                                  "(" + "".join("%d, " % s for s in shape).rstrip(" ") + ")" if len(shape) != 1 else "(%d,)" % shape[0])
    pre = 10 if version == 1 else 12
    h += " " * ((64 - (pre + len(h) + 1) % 64) % 64) + "\n"
    head = b"\x93NUMPY" + bytes([version, 0]) + (struct.pack("<H", len(h)) if version == 1 else struct.pack("<I", len(h)))
    return head + h.encode() + payload


f32 = struct.pack("<6f", 1, -2, 3.5, 0, 1e-3, 7)
put("npy", "f32_2x3.npy", npy("<f4", (2, 3), f32))
put("npy", "f32_1x2x3_v2.npy", npy("<f4", (1, 2, 3), f32, version=2))
put("npy", "f16_4.npy", npy("<f2", (4,), struct.pack("<4H", 0x3c00, 0xc000, 0x7c00, 1)))
put("npy", "f64_2.npy", npy("<f8", (2,), struct.pack("<2d", 1.5, -0.25)))
put("npy", "i4_3.npy", npy("<i4", (3,), struct.pack("<3i", 1, -2, 3)))
put("npy", "i8_1.npy", npy("<i8", (1,), struct.pack("<q", -5)))
put("npy", "u1_scalar.npy", npy("|u1", (), b"\x07"))
put("npy", "empty_0x4.npy", npy("<f4", (0, 4), b""))
put("npy", "fortran.npy", npy("<f4", (2, 3), f32, fortran=True))
put("npy", "big_endian.npy", npy(">f4", (2,), f32[:8]))
put("npy", "truncated.npy", npy("<f4", (2, 3), f32)[:-5])
put("npy", "lying_shape.npy", npy("<f4", (99999999, 3), f32))


def st(tensors, data, metadata=None):
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    header.update(tensors)
    h = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(h)) + h + data


put("safetensors", "two_f32.safetensors", st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                               "b": {"dtype": "F32", "shape": [1, 1], "data_offsets": [8, 12]}},
                                              struct.pack("<3f", 1, 2, 3)))
put("safetensors", "bf16_meta.safetensors", st({"w": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]}},
                                                b"\x80\x3f\x00\x40\x40\x40\x80\x40", {"format": "pt"}))
put("safetensors", "all_types.safetensors", st({
    "f16": {"dtype": "F16", "shape": [1], "data_offsets": [0, 2]},
    "f64": {"dtype": "F64", "shape": [1], "data_offsets": [2, 10]},
    "i32": {"dtype": "I32", "shape": [1], "data_offsets": [10, 14]},
    "i64": {"dtype": "I64", "shape": [1], "data_offsets": [14, 22]},
    "u8": {"dtype": "U8", "shape": [2], "data_offsets": [22, 24]},
    "e": {"dtype": "F32", "shape": [0, 5], "data_offsets": [24, 24]}}, bytes(24)))
put("safetensors", "qkv.safetensors", st({n: {"dtype": "F32", "shape": [1, 16, 2], "data_offsets": [128 * i, 128 * (i + 1)]}
                                          for i, n in enumerate("qkv")}, bytes(384)))
put("safetensors", "overlap.safetensors", st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                              "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12)))
dup = b'{"a":{"dtype":"F16","dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
put("safetensors", "duplicate_field.safetensors", struct.pack("<Q", len(dup)) + dup + bytes(4))
put("safetensors", "huge_header_len.safetensors", struct.pack("<Q", 1 << 62) + b"{}")

cfg_text = open(os.path.join(root, "models", "llama-11m-32k", "config.json")).read()
put("config_json", "bundled.json", cfg_text)
cfg = json.loads(cfg_text)
put("config_json", "minimal.json", json.dumps({k: cfg[k] for k in ("model_type", "vocab_size", "hidden_size",
    "intermediate_size", "num_hidden_layers", "num_attention_heads", "max_position_embeddings", "rms_norm_eps", "rope_theta")}))
put("config_json", "lying_vocab.json", json.dumps(dict(cfg, vocab_size=1 << 40)))
put("config_json", "head_dim.json", json.dumps(dict(cfg, head_dim=64, rope_scaling=None, attention_bias=False)))
put("config_json", "nested.json", "[" * 64 + "]" * 64)

put("shard_index", "two_shards.json", json.dumps({"metadata": {"total_size": 24},
    "weight_map": {"model.embed_tokens.weight": "model-00001-of-00002.safetensors",
                   "lm_head.weight": "model-00002-of-00002.safetensors"}}))
put("shard_index", "traversal.json", json.dumps({"weight_map": {"a": "../../etc/passwd"}}))
put("shard_index", "not_string.json", json.dumps({"weight_map": {"a": 5}}))
put("shard_index", "dot.json", json.dumps({"weight_map": {"a": ".."}}))

emma = open(os.path.join(root, "data", "emma.txt"), "rb").read()
put("text", "emma_head.txt", emma[:2048])
put("text", "utf8.txt", "naïve café — 日本語 🙂\n".encode())
put("text", "invalid_utf8.txt", b"ok \xff\xfe\xc3\x28 \xed\xa0\x80 end")
put("text", "nul.txt", b"a\x00b\x00\x00c")
put("text", "empty.txt", b"")
