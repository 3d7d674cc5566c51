"""Hugging Face transformers: the "hyperattn" attention backend.

    import hyperattn.hf                      # registers attn_implementation="hyperattn"
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="hyperattn")
    hyperattn.hf.configure(model, layers="all", block_size=64, sample_size=64, min_seq_len=1024)

Layers not chosen by configure() run hyperattn's exact attention. Without configure(), every layer runs
HyperAttention with the library's defaults (block 256, samples 256, min_seq_len 4096: shorter sequences
are exact). Attention masks (padding) are not supported: the backend is causal/non-causal only.
"""
from __future__ import annotations

import torch
from transformers import AttentionInterface

from . import _api

NAME = "hyperattn"


def hyperattn_attention_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None,
                                is_causal=None, **kwargs):
    """The AttentionInterface function: query [b, h, n, d], key/value [b, h_kv, n_kv, d] -> ([b, n, h, d], None)."""
    if attention_mask is not None:
        raise ValueError("attention_mask: the hyperattn backend takes no mask (no padding); expected None")
    if dropout:
        raise ValueError(f"dropout: the hyperattn backend has no dropout; expected 0, got {dropout}")
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    causal = bool(causal) and query.shape[2] > 1
    params = dict(getattr(module, "hyperattn_params", {"method": "hyper"}))
    out = _api.attention(query, key, value, causal=causal, scale=scaling, **params)
    return out.transpose(1, 2), None


AttentionInterface.register(NAME, hyperattn_attention_forward)


def _layer_indices(layers, n):
    if layers == "all" or layers is None:
        return list(range(n))
    if isinstance(layers, str) and layers.startswith("last:"):
        m = int(layers[5:])
        if not 0 <= m <= n:
            raise ValueError(f"layers: 'last:{m}' asks for more than the model's {n} layers")
        return list(range(n - m, n))
    if layers == "none":
        return []
    idx = [int(i) for i in layers]
    for i in idx:
        if not 0 <= i < n:
            raise ValueError(f"layers: index {i} is outside the model's {n} layers")
    return idx


def attention_modules(model):
    """The self-attention modules of a decoder (model.model.layers[i].self_attn), in layer order."""
    base = getattr(model, "model", model)
    layers = getattr(base, "layers", None)
    if layers is None:
        raise ValueError("model: expected a decoder with model.layers (e.g. LlamaForCausalLM)")
    return [layer.self_attn for layer in layers]


def configure(model, layers="all", **params):
    """Chooses the layers that run HyperAttention and its parameters (keywords of hyperattn.attention:
    block_size, sample_size, lsh_bits, min_seq_len, seed, preset, sampling, sink_keys, local_window,
    threads); the other layers run exact attention. layers: "all", "none", "last:N" or a list of indices.
    Also sets model.config._attn_implementation to "hyperattn". Returns the list of patched layer indices."""
    params.pop("method", None)
    _api.options(**params)  # check them now
    mods = attention_modules(model)
    chosen = set(_layer_indices(layers, len(mods)))
    for i, m in enumerate(mods):
        m.hyperattn_params = dict(params, method="hyper") if i in chosen else {"method": "exact",
                                                                                 "threads": params.get("threads")}
    model.set_attn_implementation(NAME) if hasattr(model, "set_attn_implementation") else None
    if getattr(model.config, "_attn_implementation", None) != NAME:
        model.config._attn_implementation = NAME
    return sorted(chosen)
