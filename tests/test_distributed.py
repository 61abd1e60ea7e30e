"""One training script for one process or many: a 2-process gloo DDP LoRA run (torchrun) on CPU
gives both ranks the same adapter and the single-process run's loss."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ARGS = ["--strategy", "lora", "--option", "dropout=0", "--option", "batch_size=4", "--option", "epochs=2",
        "--train-limit", "12", "--seed", "3"]


def _train(tmp_path, tiny_corpus, tiny_model, name, launcher, args=ARGS):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    out = tmp_path / name
    cmd = [sys.executable, *launcher, "-m", "harness.engine.scaleout.distributed", "--benchmark", str(tiny_corpus),
           "--model", str(tiny_model), "--out", str(out), *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "meta.json").read_text()), out


@pytest.mark.slow
def test_torchrun_two_ranks_match_one_process(tmp_path, tiny_corpus, tiny_model):
    one, _ = _train(tmp_path, tiny_corpus, tiny_model, "one", [])
    two, out = _train(tmp_path, tiny_corpus, tiny_model, "two",
                      ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"])
    assert (one["world_size"], two["world_size"], two["backend"]) == (1, 2, "gloo")
    assert len(two["rank_params_sha256"]) == 2 and two["ranks_identical"]  # bit-identical adapters
    assert two["train_tokens"] == one["train_tokens"]  # the ranks shared the same batches between them
    assert abs(two["final_train_loss"] - one["final_train_loss"]) < 1e-4
    assert one["fingerprint"] != two["fingerprint"]  # the world size is part of it
    assert (out / "checkpoint" / "adapter_config.json").is_file()


def test_script_refuses_strategies_that_do_not_train(tmp_path, tiny_corpus, tiny_model, capsys):
    from harness.engine.scaleout.distributed import main

    code = main(["--strategy", "zero-shot", "--benchmark", str(tiny_corpus), "--model", str(tiny_model),
                 "--out", str(tmp_path / "x")])
    assert code == 2
    assert "does not fine-tune" in capsys.readouterr().err


TORCHRUN = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


@pytest.mark.slow
@pytest.mark.parametrize("strategy, weights", [("lora", "adapter_model.safetensors"),
                                               ("full-ft", "trained.safetensors")])
def test_fsdp_two_ranks_train_the_one_process_weights(tmp_path, tiny_corpus, tiny_model, strategy, weights):
    """--sharding fsdp: each rank holds half of every layer's weights; the gathered weights rank 0
    writes are the single-process run's, and so is the loss."""
    from safetensors.torch import load_file

    opts = ARGS[2:] if strategy == "lora" else ["--option", "batch_size=4", "--option", "epochs=2",
                                                 "--option", "train_layers=1", "--train-limit", "12", "--seed", "3"]
    args = ["--strategy", strategy, *opts]
    one, out1 = _train(tmp_path, tiny_corpus, tiny_model, "one", [], args)
    two, out2 = _train(tmp_path, tiny_corpus, tiny_model, "two", TORCHRUN, [*args, "--sharding", "fsdp"])
    assert (two["world_size"], two["sharding"], two["backend"]) == (2, "fsdp", "gloo")
    assert two["ranks_identical"] and two["train_tokens"] == one["train_tokens"]
    assert abs(two["final_train_loss"] - one["final_train_loss"]) < 1e-4
    assert one["fingerprint"] != two["fingerprint"]
    a, b = load_file(str(out1 / "checkpoint" / weights)), load_file(str(out2 / "checkpoint" / weights))
    assert a.keys() == b.keys() and a
    for k in a:  # whole tensors, not one rank's shard
        assert a[k].shape == b[k].shape and (a[k] - b[k]).abs().max() < 1e-4, k
