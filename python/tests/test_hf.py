import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
import hyperattn.hf  # noqa: E402


@pytest.fixture(scope="module")
def model(root):
    return transformers.AutoModelForCausalLM.from_pretrained(
        str(root / "models" / "llama-11m-32k"), attn_implementation="hyperattn", dtype=torch.float32)


def nll_of(model, tokens):
    with torch.inference_mode():
        logits = model(torch.from_numpy(tokens.astype(np.int64))[None]).logits[0].float()
    lp = torch.log_softmax(logits[:-1], -1)
    return -lp.gather(1, torch.from_numpy(tokens[1:].astype(np.int64))[:, None])[:, 0].numpy(), logits


def test_exact_reproduces_reference(model, root):
    ref = root / "models" / "llama-11m-32k" / "reference"
    tokens, nll, last8 = np.load(ref / "tokens.npy"), np.load(ref / "nll.npy"), np.load(ref / "logits_last8.npy")
    assert hyperattn.hf.configure(model, layers="none") == []
    mine, logits = nll_of(model, tokens)
    assert abs(mine.mean() - nll.mean()) < 1e-4
    assert np.abs(mine - nll).max() < 2e-3
    assert np.abs(logits[-8:].numpy() - last8).max() < 2e-3


def test_hyper_all_layers(model, root):
    tokens = np.load(root / "models" / "llama-11m-32k" / "reference" / "tokens.npy")
    exact, _ = nll_of(model, tokens) if hyperattn.hf.configure(model, layers="none") == [] else None
    assert hyperattn.hf.configure(model, layers="all", block_size=64, sample_size=64, min_seq_len=1024,
                                  seed=0) == list(range(6))
    hyper, _ = nll_of(model, tokens)
    rise = hyper.mean() / exact.mean() - 1
    assert 1e-4 < rise < 0.05, rise  # HyperAttention really ran, and stays close
    assert hyperattn.hf.configure(model, layers="last:2", block_size=64, sample_size=64, min_seq_len=1024) == [4, 5]
    last2, _ = nll_of(model, tokens)
    assert exact.mean() < last2.mean() < hyper.mean()
    with pytest.raises(ValueError, match="layers"):
        hyperattn.hf.configure(model, layers=[7])
