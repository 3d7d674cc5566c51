#!/usr/bin/env python3
"""Hostile inputs through the hyperattn CLI (issue 15), run by ctest as `hostile_inputs`.

Generates malformed and lying files (standard library only) and runs each through `run`, `eval` or
`diagnose` under an address-space limit (--as-limit-mb, default 2048: an allocation the size a
lying header claims fails instead of happening) and a timeout (a blocked open or an endless read
fails instead of hanging). Every case must exit 2 with a message naming the argument (the flag)
and, for a file, its path. Prints one line per case and a summary; exits 1 if any case failed.

  hostile_inputs.py --cli build/tools/hyperattn --model models/llama-11m-32k --text data/emma.txt
                    [--as-limit-mb 2048 (0: none, e.g. under ASan)] [--timeout 60] [-k SUBSTRING]
"""
import argparse
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile

# ---------------------------------------------------------------------------------------------
# File builders


def npy_bytes(shape, payload=None, descr="<f4", fortran="False", version=1, header=None):
    if header is None:
        dims = "".join("%d, " % s for s in shape)
        shape_text = "(%d,)" % shape[0] if len(shape) == 1 else "(" + dims.rstrip(", ") + ")"
        header = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (descr, fortran, shape_text)
    pre = 10 if version == 1 else 12
    header += " " * ((64 - (pre + len(header) + 1) % 64) % 64) + "\n"
    raw = header.encode("latin-1")
    length = struct.pack("<H", len(raw)) if version == 1 else struct.pack("<I", len(raw))
    if payload is None:
        n = 1
        for s in shape:
            n *= s
        payload = struct.pack("<%df" % n, *[((i * 37) % 11 - 5) * 0.1 for i in range(n)])
    return b"\x93NUMPY" + bytes([version, 0]) + length + raw + payload


def st_bytes(header_obj=None, data=b"", header_text=None, header_len=None):
    text = header_text if header_text is not None else json.dumps(header_obj, separators=(",", ":"))
    raw = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    n = len(raw) if header_len is None else header_len
    return struct.pack("<Q", n) + raw + data


def qkv_header(shape=(16, 32), dtype="F32", width=4):
    n = 1
    for s in shape:
        n *= s
    size = n * width
    return {name: {"dtype": dtype, "shape": list(shape), "data_offsets": [i * size, (i + 1) * size]}
            for i, name in enumerate("qkv")}, 3 * size


# ---------------------------------------------------------------------------------------------


class Suite:
    def __init__(self, args, work):
        self.args = args
        self.work = work
        self.cases = []  # (name, argv, expected fragments)

    def path(self, name):
        return os.path.join(self.work, name)

    def write(self, name, data):
        p = self.path(name)
        with open(p, "wb") as f:
            f.write(data)
        return p

    def add(self, name, argv, fragments):
        if self.args.k and self.args.k not in name:
            return
        self.cases.append((name, argv, fragments))

    def limit(self):
        mb = self.args.as_limit_mb
        if mb > 0:
            resource.setrlimit(resource.RLIMIT_AS, (mb << 20, mb << 20))

    def run_all(self):
        failed = 0
        for name, argv, fragments in self.cases:
            try:
                r = subprocess.run([self.args.cli] + argv, stdin=subprocess.DEVNULL, capture_output=True,
                                   timeout=self.args.timeout, preexec_fn=self.limit)
                rc, err = r.returncode, r.stderr.decode("utf-8", "replace")
            except subprocess.TimeoutExpired:
                rc, err = "timeout", ""
            missing = [f for f in fragments if f not in err]
            ok = rc == 2 and not missing
            if not ok:
                failed += 1
                print("FAIL %-48s exit %s, missing %s\n     %s\n     stderr: %s" %
                      (name, rc, missing, " ".join(argv), err.strip()[:600]))
            else:
                print("ok   %-48s %s" % (name, err.strip().splitlines()[-1][:150] if err.strip() else ""))
        print("%d hostile inputs, %d refused cleanly (exit 2, argument named), %d failed; address-space limit %s, "
              "timeout %d s" % (len(self.cases), len(self.cases) - failed, failed,
                                "%d MiB" % self.args.as_limit_mb if self.args.as_limit_mb else "none", self.args.timeout))
        return failed


def build(s):
    a = s.args
    good_k = s.write("k.npy", npy_bytes((16, 32)))
    good_v = s.write("v.npy", npy_bytes((16, 32)))
    out = s.path("out.npy")

    def run_q(name, data, fragments=(), named=True):
        p = s.write(name + ".npy", data)
        s.add("run --q " + name, ["run", "--q", p, "--k", good_k, "--v", good_v, "--out", out],
              (["--q", p] if named else []) + list(fragments))

    def run_in(name, data, fragments=()):
        p = s.write(name + ".safetensors", data)
        s.add("run --in " + name, ["run", "--in", p, "--out", out], ["--in", p] + list(fragments))

    # ---- .npy: truncations at every header boundary and inside the data ----------------------
    full = npy_bytes((16, 32))
    header_end = 10 + struct.unpack("<H", full[8:10])[0]
    for cut in sorted({0, 1, 5, 6, 7, 8, 9, 10, 11, 20, header_end - 2, header_end - 1, header_end, header_end + 1,
                       header_end + 4, (header_end + len(full)) // 2, len(full) - 1}):
        run_q("npy_truncated_%d" % cut, full[:cut])
    full2 = npy_bytes((16, 32), version=2)
    for cut in (9, 10, 11, 12, 13):
        run_q("npy_v2_truncated_%d" % cut, full2[:cut])
    # ---- .npy: lying and malformed headers ----------------------------------------------------
    payload = full[header_end:]
    run_q("npy_shape_bigger_than_data", npy_bytes((64, 32), payload))
    run_q("npy_shape_smaller_than_data", npy_bytes((8, 32), payload))
    run_q("npy_trailing_bytes", full + b"\0" * 4)
    run_q("npy_overflowing_shape", npy_bytes((1 << 62, 1 << 62), payload))
    run_q("npy_overflow_int64_dim", npy_bytes((99999999999999999999999, 32), payload))
    run_q("npy_huge_claim_small_file", npy_bytes((1 << 40, 32), payload))
    run_q("npy_negative_dim", npy_bytes((-16, 32), payload))
    run_q("npy_header_len_past_end", full[:8] + struct.pack("<H", 60000) + full[10:])
    run_q("npy_v2_header_len_4g", full2[:8] + struct.pack("<I", 0xFFFFFFFF) + full2[12:])
    run_q("npy_bad_magic", b"\x93NUMPX" + full[6:])
    run_q("npy_version_4", full[:6] + b"\x04\x00" + full[8:])
    run_q("npy_version_1_1", full[:6] + b"\x01\x01" + full[8:])
    for descr in ("<c8", ">f4", "|O", "float32", "<f16", "<U4", "|b1"):
        run_q("npy_descr_" + descr.replace("<", "lt").replace(">", "gt").replace("|", "bar"),
              npy_bytes((16, 32), payload, descr=descr))
    run_q("npy_fortran", npy_bytes((16, 32), payload, fortran="True"))
    run_q("npy_fortran_not_bool", npy_bytes((16, 32), payload, fortran="1"))
    for label, header in [
        ("missing_shape", "{'descr': '<f4', 'fortran_order': False, }"),
        ("shape_list", "{'descr': '<f4', 'fortran_order': False, 'shape': [16, 32], }"),
        ("shape_float", "{'descr': '<f4', 'fortran_order': False, 'shape': (16.0, 32), }"),
        ("shape_nested", "{'descr': '<f4', 'fortran_order': False, 'shape': ((16,), 32), }"),
        ("structured", "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (16, 32), }"),
        ("not_a_dict", "['<f4', False, (16, 32)]"),
        ("unterminated", "{'descr': '<f4', 'fortran_order': False, 'shape': (16, 32)"),
        ("deep_nesting", "{'descr': '<f4', 'fortran_order': False, 'shape': " + "(" * 20000 + ")" * 20000 + "}"),
        ("non_ascii", "{'descr': '<f4\xff', 'fortran_order': False, 'shape': (16, 32), }"),
        ("nul_inside", "{'descr': '<f4\x00', 'fortran_order': False, 'shape': (16, 32), }"),
    ]:
        run_q("npy_header_" + label, npy_bytes((16, 32), payload, header=header))
    # ---- .npy: well-formed but not attention inputs ------------------------------------------
    run_q("npy_rank1", npy_bytes((512,)), ["rank 1"])
    run_q("npy_rank5", npy_bytes((1, 1, 1, 16, 32)), ["rank 5"])
    run_q("npy_zero_dim", npy_bytes((0, 32), b""), ["empty dimension"])
    run_q("npy_int32", npy_bytes((16, 32), payload, descr="<i4"), ["element type"])
    # Shapes the attention door refuses: the message names the tensor (q, k) and the sizes.
    p8 = s.write("d8.npy", npy_bytes((16, 8)))
    s.add("run head_dim 8", ["run", "--q", p8, "--k", p8, "--v", p8, "--out", out], ["q: head_dim is 8; expected a multiple of 16"])
    run_q("npy_head_dim_mismatch", npy_bytes((16, 64)), ["k: head_dim is 32; expected the head_dim of q (64)"], named=False)
    big = npy_bytes((16, 32), struct.pack("<512f", *([1e20] * 512)))
    p_big = s.write("q_1e20.npy", big)
    p_kbig = s.write("k_1e20.npy", big)
    s.add("run overflowing scores 1e20", ["run", "--q", p_big, "--k", p_kbig, "--v", good_v, "--out", out, "--exact"],
          ["q, k", "2^127"])
    p_vbig = s.write("v_3e38.npy", npy_bytes((16, 32), struct.pack("<512f", *([3e38] * 512))))
    s.add("run overflowing values 3e38", ["run", "--q", good_k, "--k", good_k, "--v", p_vbig, "--out", out],
          ["v: max |v|", "2^126"])
    # ---- .safetensors ------------------------------------------------------------------------
    hdr, size = qkv_header()
    good_st = st_bytes(hdr, bytes(size))
    hlen = struct.unpack("<Q", good_st[:8])[0]
    for cut in sorted({0, 4, 7, 8, 9, 8 + hlen // 2, 8 + hlen - 1, 8 + hlen, 8 + hlen + 1, len(good_st) - 1}):
        run_in("st_truncated_%d" % cut, good_st[:cut])
    run_in("st_header_len_2_63", st_bytes(hdr, bytes(size), header_len=1 << 63))
    run_in("st_header_len_past_end", st_bytes(hdr, bytes(size), header_len=hlen + size + 1))
    run_in("st_header_len_200mb", struct.pack("<Q", 200 << 20) + b"{" + b" " * 64)

    def mutated(fn, extra=0):
        h = json.loads(json.dumps(hdr))
        fn(h)
        return st_bytes(h, bytes(size + extra))

    run_in("st_offsets_past_end", mutated(lambda h: h["v"].update(data_offsets=[2 * size // 3, size + 64])))
    run_in("st_offsets_huge", mutated(lambda h: h["v"].update(data_offsets=[(1 << 64) - 8, (1 << 64) - 1])))
    run_in("st_begin_after_end", mutated(lambda h: h["q"].update(data_offsets=[64, 0])))
    run_in("st_overlap", mutated(lambda h: h["k"].update(data_offsets=[8, 8 + size // 3])))
    run_in("st_gap_and_trailing", mutated(lambda h: None, extra=64))
    run_in("st_shape_mismatch", mutated(lambda h: h["q"].update(shape=[16, 33])))
    run_in("st_shape_overflow", mutated(lambda h: h["q"].update(shape=[1 << 62, 1 << 62, 16])))
    run_in("st_negative_dim", mutated(lambda h: h["q"].update(shape=[-16, 32])))
    run_in("st_float_dim", mutated(lambda h: h["q"].update(shape=[16.0, 32])))
    run_in("st_unknown_dtype", mutated(lambda h: h["q"].update(dtype="F8_E4M3")))
    run_in("st_dtype_number", mutated(lambda h: h["q"].update(dtype=7)))
    run_in("st_i32_tensor", mutated(lambda h: h["q"].update(dtype="I32")), ["element type"])
    run_in("st_missing_q", mutated(lambda h: h.update(q_renamed=h.pop("q"))), ['"q"'])
    run_in("st_entry_not_object", mutated(lambda h: h.update(q=5)))
    run_in("st_metadata_not_strings", mutated(lambda h: h.update(__metadata__={"n": 1})))
    run_in("st_not_object", st_bytes(header_text="[1,2,3]"))
    run_in("st_not_json", st_bytes(header_text="{this is not json", data=bytes(size)))
    run_in("st_deep_nesting", st_bytes(header_text="[" * 100000 + "]" * 100000))
    run_in("st_invalid_utf8", st_bytes(header_text=b'{"q\xff":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', data=bytes(4)))
    text = json.dumps(hdr, separators=(",", ":"))
    run_in("st_duplicate_tensor", st_bytes(header_text=text[:-1] + ',"q":' + json.dumps(hdr["q"]) + "}", data=bytes(size)))
    run_in("st_duplicate_field", st_bytes(header_text=text.replace('"dtype":"F32"', '"dtype":"F16","dtype":"F32"', 1),
                                          data=bytes(size)), ["appears twice"])
    # ---- non-regular files as inputs ---------------------------------------------------------
    fifo = s.path("fifo")
    os.mkfifo(fifo)
    for label, p in (("dev_zero", "/dev/zero"), ("fifo", fifo), ("folder", s.work), ("missing", s.path("nope.npy"))):
        s.add("run --q " + label, ["run", "--q", p, "--k", good_k, "--v", good_v, "--out", out], ["--q", p])
        s.add("run --in " + label, ["run", "--in", p, "--out", out], ["--in", p])
        s.add("diagnose --q " + label, ["diagnose", "--q", p, "--k", good_k, "--v", good_v], ["--q", p])
    # ---- output paths ------------------------------------------------------------------------
    for flag in ("--out", "--lse"):
        for label, p in (("missing_folder", s.path("no/such/o.npy")), ("folder", s.work), ("fifo", fifo)):
            argv = ["run", "--q", good_k, "--k", good_k, "--v", good_v, "--out", out]
            if flag == "--out":
                argv[-1] = p
            else:
                argv += ["--lse", p]
            s.add("run %s %s" % (flag, label), argv, [flag, p])
    # ---- flags -------------------------------------------------------------------------------
    base = ["run", "--q", good_k, "--k", good_k, "--v", good_v, "--out", out]
    for flag, value in (("--seed", "-1"), ("--seed", "18446744073709551616"), ("--scale", "nan"), ("--scale", "1e39"),
                        ("--scale", "-0"), ("--block-size", "0"), ("--block-size", "1e3"), ("--lsh-bits", "17"),
                        ("--threads", "-1"), ("--sample-size", "99999999999999999999"), ("--min-seq-len", "-4")):
        s.add("run %s %s" % (flag, value), base + [flag, value], [flag])

    # ---- model folders -------------------------------------------------------------------------
    model = a.model

    def model_copy(label, replace=None):
        d = s.path("model_" + label)
        os.makedirs(d)
        for f in os.listdir(model):
            src = os.path.join(model, f)
            if os.path.isfile(src) and (replace is None or f not in replace):
                os.symlink(os.path.abspath(src), os.path.join(d, f))
        for f, content in (replace or {}).items():
            target = os.path.join(d, f)
            if content == "FIFO":
                os.mkfifo(target)
            elif content == "DIR":
                os.makedirs(target)
            elif isinstance(content, tuple) and content[0] == "LINK":
                os.symlink(content[1], target)
            elif content is not None:
                with open(target, "wb") as fh:
                    fh.write(content if isinstance(content, bytes) else content.encode())
        return d

    def eval_case(label, replace, fragments=()):
        d = model_copy(label, replace)
        s.add("eval " + label, ["eval", "--model", d, "--text", a.text, "--seq-len", "64", "--windows", "1", "--quiet"],
              ["--model"] + list(fragments))

    def diagnose_case(label, replace, fragments=()):
        d = model_copy("diag_" + label, replace)
        s.add("diagnose " + label, ["diagnose", "--model", d, "--text", a.text, "--seq-len", "64", "--layer", "0"],
              ["--model"] + list(fragments))

    cfg = json.load(open(os.path.join(model, "config.json")))

    def cfg_with(**kw):
        c = dict(cfg)
        for k, v in kw.items():
            if v is Ellipsis:
                c.pop(k, None)
            else:
                c[k] = v
        return json.dumps(c)

    config_lies = {
        "vocab_2_40": cfg_with(vocab_size=1 << 40),
        "vocab_4m": cfg_with(vocab_size=4194304),
        "intermediate_2_40": cfg_with(intermediate_size=1 << 40),
        "intermediate_2_21": cfg_with(intermediate_size=1 << 21),
        "layers_2_31": cfg_with(num_hidden_layers=1 << 31),
        "layers_7": cfg_with(num_hidden_layers=7),
        "hidden_mismatch": cfg_with(hidden_size=768),
        "heads_zero": cfg_with(num_attention_heads=0),
        "heads_kv_not_divisor": cfg_with(num_key_value_heads=4),
        "vocab_negative": cfg_with(vocab_size=-1),
        "vocab_string": cfg_with(vocab_size="4096"),
        "vocab_float": cfg_with(vocab_size=4096.5),
        "vocab_1e308": cfg_with(vocab_size=1e308),
        "vocab_missing": cfg_with(vocab_size=...),
        "max_pos_huge": cfg_with(max_position_embeddings=1 << 62),
        "rope_theta_negative": cfg_with(rope_theta=-1.0),
        "eps_zero": cfg_with(rms_norm_eps=0),
        "wrong_arch": cfg_with(architectures=["MistralForCausalLM"]),
        "rope_scaling": cfg_with(rope_scaling={"type": "linear", "factor": 2.0}),
        "not_json": "{\"vocab_size\": ",
        "empty": "",
        "array": "[]",
        "deep_nesting": "[" * 100000 + "]" * 100000,
        "duplicate_key": cfg_with()[:-1] + ', "vocab_size": 8}',
    }
    for label, text in config_lies.items():
        eval_case("config_" + label, {"config.json": text}, ["config.json"])
    diagnose_case("config_vocab_2_40", {"config.json": config_lies["vocab_2_40"]}, ["config.json"])
    diagnose_case("config_layers_2_31", {"config.json": config_lies["layers_2_31"]}, ["config.json"])
    for label, content in (("fifo", "FIFO"), ("dir", "DIR"), ("dev_zero", ("LINK", "/dev/zero")), ("missing", None)):
        eval_case("config_" + label, {"config.json": content}, ["config.json"])

    index = json.load(open(os.path.join(model, "model.safetensors.index.json")))

    def index_with(shard_for_first):
        i = json.loads(json.dumps(index))
        first = sorted(i["weight_map"])[0]
        i["weight_map"][first] = shard_for_first
        return json.dumps(i)

    for label, shard in (("traversal", "../../etc/passwd"), ("absolute", "/etc/passwd"), ("dotdot", ".."),
                         ("dot", "."), ("backslash", "..\\..\\x"), ("empty", ""), ("missing_shard", "nope.safetensors")):
        eval_case("index_" + label, {"model.safetensors.index.json": index_with(shard)}, ["model.safetensors.index.json"]
                  if label != "missing_shard" else ["nope.safetensors"])
    for label, text in (("not_json", "{"), ("no_weight_map", "{}"), ("weight_map_array", '{"weight_map": []}'),
                        ("shard_number", index_with(5)), ("deep", "{" * 1 + '"weight_map":' + "[" * 100000 + "]" * 100000 + "}")):
        eval_case("index_" + label, {"model.safetensors.index.json": text}, ["model.safetensors.index.json"])
    for label, content in (("fifo", "FIFO"), ("dir", "DIR"), ("dev_zero", ("LINK", "/dev/zero"))):
        eval_case("index_" + label, {"model.safetensors.index.json": content}, ["model.safetensors.index.json"])
    shard = sorted(set(index["weight_map"].values()))[0]
    shard_bytes = open(os.path.join(model, shard), "rb").read()
    eval_case("shard_truncated", {shard: shard_bytes[: len(shard_bytes) // 2]}, [shard])
    eval_case("shard_header_only", {shard: shard_bytes[: 8 + struct.unpack("<Q", shard_bytes[:8])[0]]}, [shard])
    eval_case("shard_garbage", {shard: b"\xff" * 4096}, [shard])
    eval_case("shard_fifo", {shard: "FIFO"}, [shard])
    eval_case("shard_dir", {shard: "DIR"}, [shard])
    eval_case("shard_dev_zero", {shard: ("LINK", "/dev/zero")}, [shard])
    for label, content in (("garbage", b"\x00\xff" * 100), ("empty", b""), ("fifo", "FIFO"), ("dir", "DIR"),
                           ("dev_zero", ("LINK", "/dev/zero")), ("missing", None)):
        eval_case("tokenizer_" + label, {"tokenizer.model": content}, ["tokenizer.model"])
    # ---- --text --------------------------------------------------------------------------------
    empty_text = s.write("empty.txt", b"")
    short_text = s.write("short.txt", b"Emma Woodhouse.")
    for label, p in (("dev_zero", "/dev/zero"), ("fifo", fifo), ("folder", s.work), ("missing", s.path("none.txt")),
                     ("empty", empty_text), ("too_short", short_text), ("dev_urandom", "/dev/urandom")):
        s.add("eval --text " + label, ["eval", "--model", model, "--text", p, "--seq-len", "64", "--quiet"], ["--text", p])
        s.add("diagnose --text " + label, ["diagnose", "--model", model, "--text", p, "--seq-len", "64", "--layer", "0"],
              ["--text", p])
    for flag, value in (("--seq-len", "99999999999999999999"), ("--seq-len", "1000000"), ("--seq-len", "-3"),
                        ("--windows", "0"), ("--patch", "last:99"), ("--patch", "layers:1+1+x"), ("--layer-keys", "1,2"),
                        ("--matmul", "fp8")):
        s.add("eval %s %s" % (flag, value),
              ["eval", "--model", model, "--text", a.text, "--seq-len", "64", "--quiet", flag, value], [flag])
    s.add("diagnose --layer 99", ["diagnose", "--model", model, "--text", a.text, "--seq-len", "64", "--layer", "99"],
          ["--layer"])
    for flag in ("--json", "--plot", "--per-position"):
        s.add("eval %s missing folder" % flag, ["eval", "--model", model, "--text", a.text, "--seq-len", "64", "--quiet",
                                                flag, s.path("no/such/x")], [flag])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cli", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--text", required=True)
    ap.add_argument("--as-limit-mb", type=int, default=2048)
    ap.add_argument("--timeout", type=int, default=60)
    ap.add_argument("-k", default="", help="only cases whose name contains this")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="hyperattn_hostile_")
    try:
        s = Suite(args, work)
        build(s)
        failed = s.run_all()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
