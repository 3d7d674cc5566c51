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


def test_hyper_perplexity_agrees_with_cli_eval(model, root, cli, tmp_path):
    """HyperAttention in all layers through transformers against `hyperattn eval` on the same window: the exact
    perplexities agree to fp32 rounding; the HyperAttention ones (same parameters, seeds 0..3) agree within the
    seed-to-seed spread (the two runners' fp32 Q/K differ in the last bits, so a few hash signs may differ)."""
    import json
    import subprocess

    import sentencepiece

    n, params = 2048, dict(block_size=64, sample_size=64, min_seq_len=512)
    sp = sentencepiece.SentencePieceProcessor(model_file=str(root / "models" / "llama-11m-32k" / "tokenizer.model"))
    tokens = np.array(sp.encode((root / "data" / "emma.txt").read_text(encoding="utf-8"))[:n], dtype=np.int64)
    cli_ppl, hf_ppl, cli_exact = [], [], None
    for seed in range(4):
        out = tmp_path / f"eval{seed}.json"
        subprocess.run([str(cli), "eval", "--model", str(root / "models" / "llama-11m-32k"), "--text",
                        str(root / "data" / "emma.txt"), "--seq-len", str(n), "--windows", "1", "--patch", "all",
                        "--block-size", "64", "--sample-size", "64", "--min-seq-len", "512", "--seed", str(seed),
                        "--json", str(out)], check=True, capture_output=True)
        d = json.loads(out.read_text())
        cli_exact = d["ppl_exact"]
        cli_ppl.append(d["results"][0]["ppl"])
        hyperattn.hf.configure(model, layers="all", seed=seed, **params)
        hf_ppl.append(float(np.exp(nll_of(model, tokens)[0].mean())))
    hyperattn.hf.configure(model, layers="none")
    hf_exact = float(np.exp(nll_of(model, tokens)[0].mean()))
    assert abs(hf_exact / cli_exact - 1) < 1e-4, (hf_exact, cli_exact)
    spread = max(np.std(cli_ppl, ddof=1), np.std(hf_ppl, ddof=1))
    assert spread > 0
    assert min(cli_ppl) > cli_exact * 1.001  # HyperAttention really ran in the CLI
    # the means of 4 seeds: their difference within 3 standard errors of the spread
    assert abs(np.mean(hf_ppl) - np.mean(cli_ppl)) <= 3 * spread * np.sqrt(2 / 4), (hf_ppl, cli_ppl)
