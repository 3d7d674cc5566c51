"""bench/bench_cpu_targets.py on tiny shapes: it runs against the built CLI and bench_attention, its
table and JSON hold what it measured (each rate the FLOP count over the time it timed, the growth
the ratio of the two times), and it refuses a bad argument by name. Not a benchmark: the sizes are
far too small for the figures to mean anything."""
import json
import os
import pathlib
import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def bench_attention(root):
    path = pathlib.Path(root) / "build" / "bench" / "bench_attention"
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"bench_attention is missing at {path} (build it first: bash scripts/build.sh)")
        pytest.skip(f"bench_attention is not built at {path}")
    return str(path)


def run_targets(root, cli, bench_attention, *args):
    script = pathlib.Path(root) / "bench" / "bench_cpu_targets.py"
    return subprocess.run([sys.executable, str(script), "--cli", cli, "--bench-attention", bench_attention, *args],
                          capture_output=True, text=True, timeout=600)


def test_cpu_targets_table_holds_what_it_measured(root, cli, bench_attention, tmp_path):
    out = tmp_path / "targets.json"
    run = run_targets(root, cli, bench_attention, "--no-torch", "--n", "256", "--model-seq", "512",
                      "--hyper-seq", "4096,8192", "--repeats", "1", "--json", str(out))
    assert run.returncode == 0, run.stderr
    doc = json.loads(out.read_text())
    assert doc["threads"] == 2 and doc["kernel"]
    assert len(doc["exact"]) == 8  # f32/bf16 x head_dim 64/128 x causal or not
    for row in doc["exact"]:
        d, n = row["head_dim"], 256
        flops = 2.0 * n * (n + 1) * d if row["causal"] else 4.0 * n * n * d
        assert row["hyperattn_s"] > 0
        assert row["gflops"] == pytest.approx(flops / row["hyperattn_s"] * 1e-9, rel=1e-9)
        assert row["sdpa_s"] is None  # --no-torch
    model = doc["model"]
    assert model["seq"] == 512 and model["exact_attention_s"] > 0
    assert model["attention_gflops"] == pytest.approx(6 * 6 * 2.0 * 512 * 513 * 64 / model["exact_attention_s"] * 1e-9)
    assert set(model["bench_gflops"]) == {"bhsd", "token-major"}
    hc = doc["hyper_causal"]
    seconds = {int(k): v for k, v in hc["seconds"].items()}
    assert hc["growth"] == pytest.approx(seconds[8192] / seconds[4096])
    verdicts = {r["verdict"] for r in doc["table"]}
    assert verdicts <= {"met", "missed", "-"} and verdicts & {"met", "missed"}
    # Every verdict printed is in the table on stdout too.
    for r in doc["table"]:
        assert f"| {r['measurement']} | {r['value']} |" in run.stdout


def test_cpu_targets_refuses_a_single_hyper_length(root, cli, bench_attention):
    run = run_targets(root, cli, bench_attention, "--no-torch", "--hyper-seq", "4096")
    assert run.returncode == 2
    assert "--hyper-seq" in run.stderr and "'4096'" in run.stderr
