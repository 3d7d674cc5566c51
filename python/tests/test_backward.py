"""Gradients through torch.ops.hyperattn.attention: exact attention against torch's own autograd of
scaled_dot_product_attention (in float64), HyperAttention against the closed form of its estimator
(checked in float64 by finite differences in the C++ suite), determinism, dtypes, layouts, errors."""
import numpy as np
import pytest
import torch

import hyperattn
from test_attention import sdpa_ref as sdpa64  # SDPA in float64, GQA by repeated heads, bottom-right mask


def rand(shape, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)


def rel_err(x, ref):
    return ((x.double() - ref).abs().max() / ref.abs().max()).item()


SHAPES = [  # (batch, heads_q, heads_kv, seq_q, seq_kv, dim)
    (1, 1, 1, 64, 64, 64),
    (2, 4, 2, 100, 160, 64),
    (1, 6, 2, 33, 257, 32),
    (1, 2, 1, 190, 120, 128),
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("layout", ["bhsd", "bshd"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_exact_gradients_match_sdpa_autograd(shape, causal, layout, dtype):
    b, hq, hk, nq, nk, d = shape
    if causal and nq > nk:
        pytest.skip("rows that see no key: SDPA gives NaN there (hyperattn: zero); covered in C++")
    q, k, v = rand((b, hq, nq, d), 1, dtype), rand((b, hk, nk, d), 2, dtype), rand((b, hk, nk, d), 3, dtype)
    go = rand((b, hq, nq, d), 4)
    ref_in = [x.double().requires_grad_() for x in (q, k, v)]
    sdpa64(*ref_in, causal).backward(go)
    args = [x.clone() for x in (q, k, v)]
    if layout == "bshd":
        args = [x.transpose(1, 2).contiguous() for x in args]
    args = [x.requires_grad_() for x in args]
    out = hyperattn.attention(*args, method="exact", causal=causal, layout=layout)
    out.backward(go.to(dtype) if layout == "bhsd" else go.transpose(1, 2).to(dtype))
    tol = 2e-5 if dtype == torch.float32 else 3e-2  # bf16: O and the gradients rounded to 8 bits
    for name, x, r in zip("qkv", args, ref_in):
        assert x.grad.dtype == dtype and x.grad.shape == x.shape
        gx = x.grad if layout == "bhsd" else x.grad.transpose(1, 2)
        assert rel_err(gx, r.grad) < tol, name


def test_nonfinite_value_reaches_only_the_rows_that_see_it():
    """An Inf in V at key 200 (causal): rows 0..199 never see it, so their outputs and dq stay
    finite and equal to SDPA's on the same inputs with that value replaced by 0; dV (P^T dO) is
    finite everywhere. (SDPA itself gives NaN in rows 0..199: its masked weight 0 times Inf.)"""
    q, k, v = rand((1, 2, 300, 64), 1), rand((1, 1, 300, 64), 2), rand((1, 1, 300, 64), 3)
    go = rand((1, 2, 300, 64), 4)
    go[:, :, 200:] = 0.0  # rows that see the Inf get no gradient (their O is Inf)
    v_inf = v.clone()
    v_inf[0, 0, 200, 5] = float("inf")
    ref_in = [x.double().requires_grad_() for x in (q, k, v)]
    ref_out = sdpa64(*ref_in, True)
    ref_out.backward(go.double())
    args = [x.clone().requires_grad_() for x in (q, k, v_inf)]
    out = hyperattn.attention(*args, method="exact", causal=True)
    assert torch.isinf(out[0, :, 200:, 5]).all()
    assert rel_err(out[:, :, :200], ref_out[:, :, :200].detach()) < 2e-5
    out.backward(go)
    assert rel_err(args[0].grad[:, :, :200], ref_in[0].grad[:, :, :200]) < 2e-5
    assert rel_err(args[2].grad, ref_in[2].grad) < 2e-5


def test_lse_gradient_flows():
    q, k, v = (rand((1, 2, 80, 64), i) for i in (1, 2, 3))
    ref_in = [x.double().requires_grad_() for x in (q, k, v)]
    s = torch.einsum("bhid,bhjd->bhij", ref_in[0], ref_in[1]) / 8.0
    (torch.logsumexp(s, -1) * rand((1, 2, 80), 5).double()).sum().backward()
    args = [x.clone().requires_grad_() for x in (q, k, v)]
    _, lse = hyperattn.attention(*args, method="exact", return_lse=True)
    (lse * rand((1, 2, 80), 5)).sum().backward()
    for x, r in zip(args[:2], ref_in[:2]):
        assert rel_err(x.grad, r.grad) < 2e-5
    assert ref_in[2].grad is None and torch.count_nonzero(args[2].grad) == 0  # the LSE does not depend on v


def test_gradcheck_exact_in_float64_reference_path():
    # hyperattn computes in fp32; gradcheck's own finite differences need float64, so compare its analytic
    # gradients with torch's float64 autograd of the same function instead (the C++ suite checks the
    # closed form by finite differences in double).
    q, k, v = (rand((1, 1, 16, 16), i) for i in (1, 2, 3))
    f64 = lambda q, k, v: sdpa64(q, k, v, True)
    assert torch.autograd.gradcheck(f64, tuple(x.double().requires_grad_() for x in (q, k, v)))
    args = [x.clone().requires_grad_() for x in (q, k, v)]
    hyperattn.attention(*args, method="exact", causal=True).sum().backward()
    ref_in = [x.double().requires_grad_() for x in (q, k, v)]
    f64(*ref_in).sum().backward()
    for x, r in zip(args, ref_in):
        assert rel_err(x.grad, r.grad) < 2e-5


HYPER = dict(block_size=32, sample_size=32, min_seq_len=64, lsh_bits=4, seed=3)


@pytest.mark.parametrize("causal", [False, True])
def test_hyper_value_gradient_is_the_estimators(causal):
    """Given q and k, HyperAttention's key sets (hashes and samples) are fixed and its output is linear in v,
    so a central difference along v is exact up to fp32 rounding: the operator's dv must match it. (dq and dk
    are checked against the double-precision closed form in the C++ suite, tests/api/test_backward.cpp.)"""
    q, k, v = (rand((1, 2, 512, 64), i) for i in (1, 2, 3))
    args = [x.clone().requires_grad_() for x in (q, k, v)]
    out = hyperattn.attention(*args, causal=causal, **HYPER)
    go = rand(out.shape, 9)
    out.backward(go)
    d = rand(v.shape, 10)
    with torch.no_grad():
        f = lambda vv: (hyperattn.attention(q, k, vv, causal=causal, **HYPER).double() * go.double()).sum().item()
        fd = (f(v + 0.5 * d) - f(v - 0.5 * d)) / 1.0
    analytic = (args[2].grad.double() * d.double()).sum().item()
    assert abs(fd - analytic) <= 1e-4 * max(1.0, abs(analytic)), (fd, analytic)
    # and the estimator is not exact attention: its gradient differs from exact attention's
    ref = [x.clone().requires_grad_() for x in (q, k, v)]
    hyperattn.attention(*ref, method="exact", causal=causal).backward(go)
    assert rel_err(args[0].grad, ref[0].grad.double()) > 1e-3


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_hyper_gradients_same_bytes_for_any_thread_count(threads):
    q, k, v = (rand((1, 4, 600, 64), i) for i in (1, 2, 3))
    kv = [x[:, :2].contiguous() for x in (k, v)]
    grads = []
    for t in (1, threads):
        args = [x.clone().requires_grad_() for x in (q, *kv)]
        hyperattn.attention(*args, causal=True, threads=t, **HYPER).sum().backward()
        grads.append([x.grad for x in args])
    for a, b in zip(*grads):
        assert torch.equal(a, b)


def test_hyper_with_one_block_and_no_samples_is_exact():
    q, k, v = (rand((1, 2, 300, 64), i) for i in (1, 2, 3))
    got, ref = [], []
    for method, opts, dst in (("hyper", dict(block_size=512, sample_size=0, min_seq_len=0), got), ("exact", {}, ref)):
        args = [x.clone().requires_grad_() for x in (q, k, v)]
        hyperattn.attention(*args, method=method, causal=True, **opts).sum().backward()
        dst.extend(x.grad for x in args)
    for a, b in zip(got, ref):  # the causal recursion still splits (into exact parts): fp32 rounding apart
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)


def test_authors_module_trains():
    m = hyperattn.torch.HyperAttention(input_dim=64, block_size=32, sample_size=32, min_seq_len=64, lsh_num_projs=4)
    q, k, v = (rand((1, 2, 256, 64), i).requires_grad_() for i in (1, 2, 3))
    out, lse = m(q, k, v, causal=True, return_lse=True)
    (out.sum() + lse.sum()).backward()
    assert all(torch.isfinite(x.grad).all() for x in (q, k, v))


def test_torch_compile_traces_forward_and_backward():
    q, k, v = (rand((1, 2, 128, 64), i) for i in (1, 2, 3))

    def f(q, k, v):
        return (hyperattn.attention(q, k, v, method="exact", causal=True) ** 2).sum()

    torch._dynamo.reset()
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    a = [x.clone().requires_grad_() for x in (q, k, v)]
    b = [x.clone().requires_grad_() for x in (q, k, v)]
    compiled(*a).backward()
    f(*b).backward()
    for x, y in zip(a, b):
        torch.testing.assert_close(x.grad, y.grad)
    torch.library.opcheck(torch.ops.hyperattn.attention_backward.default,
                          (q, k, v, *torch.ops.hyperattn.attention(q, k, v, True, 0.0, "exact", 256, 256, 7, 4096, 0,
                                                                   "", False, 0, "uniform", "gray-rank", 0, 0, True),
                           torch.ones_like(q), torch.empty(0), True, 0.0, "exact", 256, 256, 7, 4096, 0, "", False, 0,
                           "uniform", "gray-rank", 0, 0),
                          test_utils=("test_schema", "test_faketensor"))


def test_broadcast_gradient_from_sum_is_accepted():
    # out.sum().backward() hands the operator an expanded gradient (all strides 0).
    q, k, v = (rand((1, 1, 40, 32), i).requires_grad_() for i in (1, 2, 3))
    hyperattn.attention(q, k, v, method="exact").sum().backward()
    assert torch.isfinite(q.grad).all()


def test_backward_errors_name_the_argument():
    q, k, v = (rand((1, 2, 64, 32), i) for i in (1, 2, 3))
    out, lse = hyperattn.attention(q, k, v, method="exact", return_lse=True)
    dq, dk, dv = (torch.empty_like(x) for x in (q, k, v))
    o = hyperattn._api.options(method="exact")
    with pytest.raises(ValueError, match="dk"):
        hyperattn._api.run_backward_into(q, k, v, out, lse, torch.ones_like(out), None, dq, dq, dv, o)
    with pytest.raises(ValueError, match="dq"):
        hyperattn._api.run_backward_into(q, k, v, out, lse, torch.ones_like(out), None, q, dk, dv, o)
    with pytest.raises(ValueError, match="lse"):
        hyperattn._api.run_backward_into(q, k, v, out, lse[:, :1], torch.ones_like(out), None, dq, dk, dv, o)
    with pytest.raises(TypeError, match="grad_out"):
        hyperattn._api.run_backward_into(q, k, v, out, lse, torch.ones_like(out, dtype=torch.float16), None, dq, dk, dv, o)


def test_training_script_runs_a_few_steps(root, tmp_path):
    """scripts/train_emma.py (the README's training check), a few short steps of each method, as in CI."""
    import json
    import subprocess
    import sys

    out_json, out_png = tmp_path / "train.json", tmp_path / "train.png"
    r = subprocess.run([sys.executable, str(root / "scripts" / "train_emma.py"), "--steps", "2", "--seq-len", "1024",
                        "--block-size", "32", "--sample-size", "32", "--min-seq-len", "256", "--json", str(out_json),
                        "--plot", str(out_png)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    data = json.loads(out_json.read_text())
    for m in ("exact", "hyper"):
        res = data["results"][m]
        assert len(res["losses"]) == 2 and all(np.isfinite(res["losses"]))
        assert 0 < res["held_out_loss_exact"] < 20
    # same initial weights, same first window: the first losses differ only by the attention approximation
    assert abs(data["results"]["exact"]["losses"][0] - data["results"]["hyper"]["losses"][0]) < 0.2
    assert out_png.stat().st_size > 10_000
    bad = subprocess.run([sys.executable, str(root / "scripts" / "train_emma.py"), "--steps", "0"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "--steps" in bad.stderr
