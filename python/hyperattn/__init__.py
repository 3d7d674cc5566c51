"""hyperattn: HyperAttention (Han et al., 2023) and fast exact attention on the CPU.

    import hyperattn
    out = hyperattn.attention(q, k, v, causal=True)            # numpy or torch, [b, h, n, d]
    out, lse = hyperattn.attention(q, k, v, return_lse=True)   # lse: [b, h, n], fp32

PyTorch: ``hyperattn.torch`` (the ``torch.ops.hyperattn.attention`` operator and the authors'
``HyperAttention`` module); Hugging Face transformers: ``hyperattn.hf``.
"""
from . import _core
from ._api import attention, PRESETS, SAMPLINGS, BUCKET_ORDERS

__version__ = _core.__version__
has_cuda = _core.has_cuda
is_supported_head_dim = _core.is_supported_head_dim

__all__ = ["attention", "is_supported_head_dim", "has_cuda", "__version__", "PRESETS", "SAMPLINGS", "BUCKET_ORDERS"]
