"""The Python door (issue 15): what the C++ door refuses is refused in Python too, as a clear
TypeError or ValueError naming the argument, never a crash or a silent NaN."""
import numpy as np
import pytest
import torch

import hyperattn


def rand(shape, seed, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.bool_, np.complex64, np.float16])
def test_numpy_dtypes_refused(dtype):
    q = rand((1, 2, 32, 64), 1)
    with pytest.raises(TypeError, match=r"^q: dtype"):
        hyperattn.attention(q.astype(dtype), q, q)
    with pytest.raises(TypeError, match=r"^v: dtype"):
        hyperattn.attention(q, q, q.astype(dtype))


@pytest.mark.parametrize("dtype", [torch.int32, torch.float64, torch.complex64, torch.bool])
def test_torch_dtypes_refused(dtype):
    q = torch.from_numpy(rand((1, 2, 32, 64), 2))
    with pytest.raises(TypeError):
        hyperattn.attention(q.to(dtype), q.to(dtype), q.to(dtype))


def test_shapes_refused():
    q = rand((1, 2, 32, 64), 3)
    with pytest.raises(ValueError, match="4 dimensions"):
        hyperattn.attention(q[None], q[None], q[None])
    with pytest.raises(ValueError, match="batch"):
        hyperattn.attention(q, np.concatenate([q, q]), np.concatenate([q, q]))
    with pytest.raises(ValueError, match="seq"):
        hyperattn.attention(q, q, q[:, :, :16])
    with pytest.raises(ValueError, match="positive"):
        hyperattn.attention(q[:, :, :0], q, q)
    t = torch.from_numpy(q)
    with pytest.raises(ValueError, match="head_dim"):
        hyperattn.attention(t, t[..., :48], t[..., :48])


def test_devices_refused():
    meta = torch.empty((1, 2, 32, 64), device="meta")
    cpu = torch.from_numpy(rand((1, 2, 32, 64), 4))
    with pytest.raises((ValueError, TypeError, RuntimeError), match="(?i)device|cuda|meta"):
        hyperattn.attention(cpu, meta, cpu)


def test_non_contiguous_inputs():
    q = rand((1, 2, 32, 64), 5)
    # Innermost stride != 1 is refused, naming the stride.
    every_other = np.lib.stride_tricks.as_strided(q, (1, 2, 32, 32), (q.strides[0], q.strides[1], q.strides[2], 8))
    with pytest.raises(ValueError, match="stride"):
        hyperattn.attention(every_other, q[..., :32], q[..., :32])
    # Any other strides are fine and match a contiguous copy.
    wide = rand((1, 2, 32, 128), 6)[..., :64]
    out = hyperattn.attention(wide, wide, wide, method="exact")
    ref = hyperattn.attention(np.ascontiguousarray(wide), np.ascontiguousarray(wide), np.ascontiguousarray(wide),
                              method="exact")
    np.testing.assert_array_equal(out, ref)
    tq = torch.from_numpy(rand((1, 32, 2, 64), 7)).transpose(1, 2)  # a bshd tensor seen as bhsd
    assert not tq.is_contiguous()
    torch.testing.assert_close(hyperattn.attention(tq, tq, tq, method="exact"),
                               hyperattn.attention(tq.contiguous(), tq.contiguous(), tq.contiguous(), method="exact"))


def test_overflowing_magnitudes_raise():
    q = rand((1, 1, 128, 64), 8, 1e20)
    with pytest.raises(ValueError, match=r"q, k: .*2\^127"):
        hyperattn.attention(q, q, q, method="exact")
    with pytest.raises(ValueError, match=r"q, k: "):
        hyperattn.attention(torch.from_numpy(q), torch.from_numpy(q), torch.from_numpy(q))
    v = np.full((1, 1, 128, 64), 3e38, np.float32)
    small = rand((1, 1, 128, 64), 9)
    with pytest.raises(ValueError, match=r"v: max \|v\|"):
        hyperattn.attention(small, small, v, method="exact")
    # 1e18 still computes, finite.
    big = rand((1, 1, 128, 64), 10, 1e18)
    assert np.isfinite(hyperattn.attention(big, big, small, method="exact")).all()


@pytest.mark.parametrize("scale", [float("nan"), float("inf"), 0.0, -1.0])
def test_bad_scale(scale):
    q = rand((1, 1, 32, 64), 11)
    with pytest.raises(ValueError, match="scale"):
        hyperattn.attention(q, q, q, scale=scale)


@pytest.mark.parametrize("name,value,error", [("seed", 2**64, ValueError), ("seed", -1, ValueError),
                                              ("seed", 1.5, TypeError), ("threads", 2**40, ValueError),
                                              ("lsh_bits", 2**40, ValueError), ("block_size", 2**63, ValueError),
                                              ("block_size", 0, ValueError), ("threads", -1, ValueError),
                                              ("causal", 1, TypeError), ("lsh_bits", 17, ValueError)])
def test_bad_options(name, value, error):
    q = rand((1, 1, 32, 64), 12)
    with pytest.raises(error, match=name):
        hyperattn.attention(q, q, q, **{name: value})
