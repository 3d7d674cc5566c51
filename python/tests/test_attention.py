import subprocess
import threading
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import hyperattn
import hyperattn.torch as ht


def rand(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


def sdpa_ref(q, k, v, causal, scale=None):
    """torch SDPA in float64 on [b, h, n, d], GQA by repeating heads, bottom-right causal mask."""
    q, k, v = (torch.as_tensor(x).double() for x in (q, k, v))
    g = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)
    mask = None
    if causal:
        nq, nk = q.shape[2], k.shape[2]
        mask = torch.ones(nq, nk, dtype=torch.bool).tril(nk - nq)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)


SHAPES = [  # (batch, heads_q, heads_kv, seq_q, seq_kv, dim)
    (1, 1, 1, 64, 64, 64),
    (2, 4, 2, 100, 160, 64),
    (1, 6, 2, 33, 257, 32),
    (1, 8, 1, 200, 90, 128),
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("layout", ["bhsd", "bshd"])
@pytest.mark.parametrize("kind", ["numpy", "torch32", "torch16"])
def test_exact_matches_sdpa(shape, causal, layout, kind):
    b, hq, hk, nq, nk, d = shape
    q, k, v = rand((b, hq, nq, d), 1), rand((b, hk, nk, d), 2), rand((b, hk, nk, d), 3)
    ref = sdpa_ref(q, k, v, causal).numpy()
    args = [q, k, v]
    if layout == "bshd":
        args = [np.ascontiguousarray(x.swapaxes(1, 2)) for x in args]
    if kind != "numpy":
        args = [torch.from_numpy(x) for x in args]
        if kind == "torch16":
            args = [x.to(torch.bfloat16) for x in args]
            ref = sdpa_ref(*[(x.swapaxes(1, 2) if layout == "bshd" else x).double() for x in args], causal).numpy()
    out, lse = hyperattn.attention(*args, method="exact", causal=causal, layout=layout, return_lse=True)
    assert type(out) is type(args[0])
    assert out.shape == args[0].shape and tuple(lse.shape) == (b, hq, nq)
    if kind == "torch16":
        assert out.dtype == torch.bfloat16
    o = out.float().numpy() if kind != "numpy" else out
    if layout == "bshd":
        o = o.swapaxes(1, 2)
    tol = 1e-2 if kind == "torch16" else 2e-5
    np.testing.assert_allclose(o, ref, atol=tol, rtol=tol)


def test_lse_and_scale():
    q, k, v = rand((1, 2, 50, 64), 4), rand((1, 2, 70, 64), 5), rand((1, 2, 70, 64), 6)
    out, lse = hyperattn.attention(q, k, v, method="exact", scale=0.3, return_lse=True)
    s = np.einsum("bhqd,bhkd->bhqk", q.astype(np.float64), k.astype(np.float64)) * 0.3
    m = s.max(-1, keepdims=True)
    ref_lse = (m + np.log(np.exp(s - m).sum(-1, keepdims=True)))[..., 0]
    np.testing.assert_allclose(lse, ref_lse, atol=1e-4)
    np.testing.assert_allclose(out, sdpa_ref(q, k, v, False, 0.3).numpy(), atol=2e-5)


def test_strided_views_zero_copy():
    # a slice of a bigger buffer along heads and a [b, n, h, d] view: both read without a copy
    big = torch.from_numpy(rand((1, 8, 128, 64), 7))
    q = big[:, ::2]
    k = torch.from_numpy(rand((1, 128, 4, 64), 8)).transpose(1, 2)
    v = torch.from_numpy(rand((1, 4, 128, 64), 9))
    out = hyperattn.attention(q, k, v, method="exact")
    np.testing.assert_allclose(out.numpy(), sdpa_ref(q, k, v, False).numpy(), atol=2e-5)


def test_hyper_matches_cli_bytes(tmp_path, cli):
    b, hq, hk, n, d = 1, 4, 2, 2048, 64
    q, k, v = rand((b, hq, n, d), 10), rand((b, hk, n, d), 11), rand((b, hk, n, d), 12)
    for causal in (False, True):
        for name, x in (("q", q), ("k", k), ("v", v)):
            np.save(tmp_path / f"{name}.npy", x)
        cmd = [cli, "run", "--q", str(tmp_path / "q.npy"), "--k", str(tmp_path / "k.npy"), "--v",
               str(tmp_path / "v.npy"), "--out", str(tmp_path / "o.npy"), "--lse", str(tmp_path / "l.npy"),
               "--block-size", "64", "--sample-size", "64", "--min-seq-len", "512", "--seed", "5",
               "--threads", "2"] + (["--causal"] if causal else [])
        subprocess.run(cmd, check=True, capture_output=True)
        want, want_lse = np.load(tmp_path / "o.npy"), np.load(tmp_path / "l.npy")
        for kind in ("numpy", "torch"):
            args = (q, k, v) if kind == "numpy" else tuple(torch.from_numpy(x) for x in (q, k, v))
            got, lse = hyperattn.attention(*args, causal=causal, block_size=64, sample_size=64, min_seq_len=512,
                                           seed=5, threads=1, return_lse=True)
            got, lse = np.asarray(got), np.asarray(lse)
            assert got.tobytes() == want.tobytes(), (causal, kind)
            assert lse.tobytes() == want_lse.tobytes(), (causal, kind)
        # a different seed gives other bytes (the check can fail)
        other = hyperattn.attention(q, k, v, causal=causal, block_size=64, sample_size=64, min_seq_len=512, seed=6)
        assert other.tobytes() != want.tobytes()
        assert np.isfinite(want).all()


def test_hyper_options_and_presets():
    q, k, v = rand((1, 2, 1024, 64), 13), rand((1, 2, 1024, 64), 14), rand((1, 2, 1024, 64), 15)
    base = dict(block_size=64, sample_size=64, min_seq_len=256, causal=True)
    outs = [hyperattn.attention(q, k, v, **base, **extra) for extra in (
        {}, {"sampling": "stratified"}, {"sink_keys": 16}, {"local_window": 32}, {"preset": "stratified-window"},
        {"bucket_order": "reference"}, {"lsh_bits": 4})]
    for o in outs:
        assert np.isfinite(o).all()
    assert len({o.tobytes() for o in outs}) == len(outs)


def test_no_copy_for_contiguous_inputs(monkeypatch):
    seen = {}
    real = hyperattn._core.attention

    def spy(q, k, v, out, lse, *rest):
        seen.update(q=q, k=k, v=v, out=out)
        return real(q, k, v, out, lse, *rest)

    monkeypatch.setattr(hyperattn._core, "attention", spy)
    for layout in ("bhsd", "bshd"):
        tq, tk, tv = (torch.from_numpy(rand((1, 64, 2, 64), i)) for i in (1, 2, 3))
        out = hyperattn.attention(tq, tk, tv, method="exact", layout=layout)
        assert seen["q"].data_ptr() == tq.data_ptr() and seen["k"].data_ptr() == tk.data_ptr()
        assert seen["v"].data_ptr() == tv.data_ptr() and seen["out"].data_ptr() == out.data_ptr()
        nq = rand((1, 64, 2, 64), 4)
        outn = hyperattn.attention(nq, nq, nq, method="exact", layout=layout)
        assert seen["q"].ctypes.data == nq.ctypes.data and seen["out"].ctypes.data == outn.ctypes.data


def test_gil_released():
    q = rand((1, 1, 8192, 64), 16)
    ticks = []
    stop = threading.Event()

    def count():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    t = threading.Thread(target=count)
    t.start()
    time.sleep(0.01)
    n0 = len(ticks)
    start = time.perf_counter()
    hyperattn.attention(q, q, q, method="exact", threads=1)
    end = time.perf_counter()
    during = sum(1 for x in ticks[n0:] if start < x < end)
    stop.set()
    t.join()
    assert end - start > 0.05
    assert during >= 10, f"the other thread ticked {during} times during a {end - start:.3f} s call"


def test_errors():
    q = rand((1, 2, 32, 64), 1)
    with pytest.raises(TypeError, match="q: dtype float64"):
        hyperattn.attention(q.astype(np.float64), q, q)
    with pytest.raises(TypeError, match="float16"):
        hyperattn.attention(*(torch.from_numpy(q).half(),) * 3)
    with pytest.raises(TypeError, match="one dtype"):
        hyperattn.attention(torch.from_numpy(q), torch.from_numpy(q).bfloat16(), torch.from_numpy(q))
    with pytest.raises(TypeError, match="mix"):
        hyperattn.attention(torch.from_numpy(q), q, q)
    with pytest.raises(TypeError, match="numpy.ndarray or a torch.Tensor"):
        hyperattn.attention(q.tolist(), q, q)
    with pytest.raises(ValueError, match="4 dimensions"):
        hyperattn.attention(q[0], q[0], q[0])
    with pytest.raises(ValueError, match="head_dim"):
        hyperattn.attention(q, q[..., :32], q)
    with pytest.raises(ValueError, match="stride"):  # innermost stride must be 1
        hyperattn.attention(q.swapaxes(2, 3), q.swapaxes(2, 3), q.swapaxes(2, 3), method="exact")
    with pytest.raises(ValueError, match="heads"):
        hyperattn.attention(rand((1, 3, 32, 64), 2), q, q)
    with pytest.raises(ValueError, match="layout"):
        hyperattn.attention(q, q, q, layout="bsdh")
    with pytest.raises(ValueError, match="method"):
        hyperattn.attention(q, q, q, method="flash")
    with pytest.raises(ValueError, match="preset"):
        hyperattn.attention(q, q, q, preset="fast")
    with pytest.raises(ValueError, match="sampling"):
        hyperattn.attention(q, q, q, sampling="random")
    with pytest.raises(ValueError, match="threads"):
        hyperattn.attention(q, q, q, threads=0)
    with pytest.raises(ValueError, match="scale"):
        hyperattn.attention(q, q, q, scale=-1.0)
    with pytest.raises(ValueError, match="lsh_bits"):
        hyperattn.attention(q, q, q, lsh_bits=40)
    with pytest.raises(ValueError, match="seed"):
        hyperattn.attention(q, q, q, seed=-1)
    with pytest.raises(ValueError, match="head_dim"):
        hyperattn.attention(*(rand((1, 1, 8, 20), 3),) * 3)
    if torch.cuda.is_available() or True:
        meta = torch.empty((1, 2, 32, 64), device="meta")
        with pytest.raises(ValueError, match="no CUDA backend"):
            hyperattn.attention(meta, meta, meta)


def test_overlapping_outputs_refused():
    q = rand((1, 2, 32, 64), 1)
    out = np.empty_like(q)
    with pytest.raises(ValueError, match="out: overlaps the memory of q"):
        hyperattn._core.attention(q, q, q, q, None, "exact", False, 0.0, 0, 7, 256, 256, 4096, 0, "", "gray-rank",
                                  "uniform", 0, 0)
    lse = np.empty((1, 2, 32), np.float32)
    with pytest.raises(ValueError, match="lse: overlaps"):
        hyperattn._core.attention(q, q, q, out, out[:, :, :, 0], "exact", False, 0.0, 0, 7, 256, 256, 4096, 0, "",
                                  "gray-rank", "uniform", 0, 0)
    with pytest.raises(ValueError, match="lse: expected shape"):
        hyperattn._core.attention(q, q, q, out, lse[:, :1], "exact", False, 0.0, 0, 7, 256, 256, 4096, 0, "",
                                  "gray-rank", "uniform", 0, 0)
    with pytest.raises(ValueError, match="rows overlap"):
        hyperattn._core.attention(q, q, q, np.broadcast_to(out[:, :, :1], q.shape).copy()[:, :, :1].repeat(32, 2)
                                  [:, :, ::1] if False else np.lib.stride_tricks.as_strided(
                                      out, q.shape, (0, 0, 0, 4), writeable=True),
                                  None, "exact", False, 0.0, 0, 7, 256, 256, 4096, 0, "", "gray-rank", "uniform", 0, 0)
    hyperattn._core.attention(q, q, q, out, lse, "exact", False, 0.0, 0, 7, 256, 256, 4096, 0, "", "gray-rank",
                              "uniform", 0, 0)
    np.testing.assert_allclose(out, sdpa_ref(q, q, q, False).numpy(), atol=2e-5)


def test_torch_compile_fullgraph_and_backward():
    q, k, v = (torch.from_numpy(rand((1, 2, 64, 64), i)) for i in (1, 2, 3))

    def f(q, k, v):
        return hyperattn.attention(q * 2, k, v, method="exact", causal=True) + 1

    torch._dynamo.reset()
    compiled = torch.compile(f, fullgraph=True, backend="eager")
    np.testing.assert_array_equal(compiled(q, k, v).numpy(), f(q, k, v).numpy())
    torch.library.opcheck(torch.ops.hyperattn.attention.default,
                          (q, k, v, False, 0.0, "exact", 256, 256, 7, 4096, 0, "", False, 0, "uniform", "gray-rank",
                           0, 0, True), test_utils=("test_schema", "test_faketensor"))
    x = q.clone().requires_grad_()
    y = hyperattn.attention(x, k, v)
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_sdpa_stand_in_and_module():
    q, k, v = (torch.from_numpy(rand((2, 4, 300, 64), i)) for i in (1, 2, 3))
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    got = ht.scaled_dot_product_attention(q, k, v, is_causal=True, method="exact")
    torch.testing.assert_close(got, ref, atol=2e-5, rtol=2e-5)
    with pytest.raises(ValueError, match="attn_mask"):
        ht.scaled_dot_product_attention(q, k, v, attn_mask=torch.ones(300, 300, dtype=torch.bool))
    m = ht.HyperAttention(input_dim=64, lsh_num_projs=7, block_size=256, sample_size=256, min_seq_len=4096)
    out, lse = m(q, k, v, causal=True, return_lse=True)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=2e-5)  # below min_seq_len: exact
    assert lse.shape == (2, 4, 300, 1)
    m2 = ht.HyperAttention(input_dim=64, block_size=64, sample_size=64, min_seq_len=256, seed=3)
    qq, kk, vv = (torch.from_numpy(rand((1, 2, 1024, 64), i)) for i in (4, 5, 6))
    np.testing.assert_array_equal(m2(qq, kk, vv).numpy(), hyperattn.attention(
        qq.numpy(), kk.numpy(), vv.numpy(), block_size=64, sample_size=64, min_seq_len=256, seed=3))
    with pytest.raises(ValueError, match="input_dim"):
        m2(qq[..., :32], kk[..., :32], vv[..., :32])
