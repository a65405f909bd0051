"""The trainer end to end on a tiny synth dataset: outputs, resume equivalence, bad checkpoints,
config layering, and a 2-process gloo run."""
import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from igm_fast.data.dataset import generate_synth
from igm_fast.io import InputError
from igm_fast.model.encoder import load_encoder
from igm_fast.train import DEFAULTS, main, param_groups, parse_args, resolve_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return generate_synth(tmp_path_factory.mktemp("data"), samples_per_class=4, num_subjects=4)


def tiny_args(data_dir, out, *extra):
    """The default command (cpu-small preset) at toy size."""
    sets = dict(out_frames=8, dim=16, depth=1, heads=2, gen_depth=1, warmup_epochs=1, linear_epochs=2,
                log_every=1, eval_batch_size=16, save_every=1)
    return ["--dataset", str(data_dir), "--epochs", "2", "--batch-size", "8", "--kernels", "eager",
            "--out", str(out), *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")], *extra]


def read_metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def run_dir(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    main(tiny_args(data_dir, out))
    return out


@pytest.mark.slow
def test_default_command_writes_every_output(run_dir, capsys):
    for name in ("config.yaml", "metrics.jsonl", "checkpoint_last.pt", "checkpoint_0001.pt", "encoder.pt",
                 "summary.json", "curves.png"):
        assert (run_dir / name).is_file(), name
    assert any((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["dim"] == 16 and config["mask_ratio"] == 0.9 and config["out"] == str(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("knn_top1", "knn_top5", "linear_top1", "linear_top5"):
        assert 0 <= summary[key] <= 100 and 0 <= summary[f"random_{key}"] <= 100
    records = read_metrics(run_dir)
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == list(range(1, len(train) + 1))
    assert all(math.isfinite(r[k]) for r in train for k in ("loss", "loss_gen", "loss_feat", "loss_dist", "lr"))
    assert records[-1]["kind"] == "eval" and "knn_top1" in records[-1]
    encoder = load_encoder(run_dir / "encoder.pt")
    assert encoder.features(torch.randn(2, 3, 8, 25, 2)).shape == (2, 16)


@pytest.mark.slow
def test_resumed_run_gives_the_uninterrupted_losses(run_dir, tmp_path, data_dir):
    """A run interrupted in epoch 2 (checkpoint_last.pt was still checkpoint_0001.pt, its log went
    further) and resumed reproduces the uninterrupted run's losses and final weights exactly."""
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(run_dir / "checkpoint_0001.pt", resumed / "checkpoint_last.pt")
    epoch1 = [r for r in read_metrics(run_dir) if r["epoch"] == 1]
    interrupted_log = epoch1 + [{**epoch1[-1], "step": epoch1[-1]["step"] + 1, "epoch": 2, "loss": -1.0}]
    cut_short = json.dumps(interrupted_log[-1])[:20]  # the interruption hit in the middle of an append
    (resumed / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in interrupted_log) + cut_short)
    main(tiny_args(data_dir, resumed, "--resume", "auto", "--eval", "none"))
    want = [r for r in read_metrics(run_dir) if r["kind"] == "train"]
    got = read_metrics(resumed)
    assert [r["step"] for r in got] == [r["step"] for r in want]
    for a, b in zip(got, want):
        for k in ("loss", "loss_gen", "loss_feat", "loss_dist", "lr"):
            assert a[k] == b[k], (a["step"], k)
    a, b = load_encoder(resumed / "encoder.pt").state_dict(), load_encoder(run_dir / "encoder.pt").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_existing_run_is_never_overwritten(run_dir, data_dir):
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    with pytest.raises(InputError, match="already holds a run; pass --resume auto"):
        main(tiny_args(data_dir, run_dir))
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_bad_checkpoint_is_a_clear_error(run_dir, tmp_path, data_dir, damage):
    bad = tmp_path / "checkpoint_last.pt"
    data = (run_dir / "checkpoint_last.pt").read_bytes()
    bad.write_bytes(data[: len(data) // 3] if damage == "truncated" else b"\x00garbage" * 100)
    with pytest.raises(InputError, match="not a readable torch checkpoint") as err:
        main(tiny_args(data_dir, tmp_path, "--resume", "auto"))
    assert str(bad) in str(err.value)


def test_unknown_config_keys_are_errors(tmp_path):
    with pytest.raises(InputError, match=r"command line: unknown config keys \['bogus'\]"):
        resolve_config(parse_args(["--set", "bogus=1"]))
    preset = tmp_path / "typo.yaml"
    preset.write_text("inherit: cpu-small\nmask_ration: 0.5\n")
    with pytest.raises(InputError, match=rf"{preset}: unknown config keys \['mask_ration'\]"):
        resolve_config(parse_args(["--config", str(preset)]))
    with pytest.raises(InputError, match="unknown protocols"):
        resolve_config(parse_args(["--eval", "knn,finetune"]))


def test_cli_overrides_yaml_overrides_defaults(tmp_path):
    preset = tmp_path / "mine.yaml"
    preset.write_text("lr: 0.5\ndim: 32\n")
    cfg, ckpt = resolve_config(parse_args(["--config", str(preset), "--lr", "0.25", "--set", "tau=0.2",
                                           "--eval", "none"]))
    assert ckpt is None
    assert (cfg["lr"], cfg["dim"], cfg["tau"], cfg["eval"]) == (0.25, 32, 0.2, [])
    assert cfg["depth"] == DEFAULTS["depth"]
    default, _ = resolve_config(parse_args([]))  # no arguments: synth with the cpu-small preset
    small = yaml.safe_load((REPO / "configs" / "cpu-small.yaml").read_text())
    assert default["dataset"] == "synth" and default["dim"] == small["dim"] and default["device"] == "auto"


def test_weight_decay_applies_to_matrices_only():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    decay, no_decay = param_groups(model, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert [p.shape for p in decay["params"]] == [(4, 3)]
    assert len(no_decay["params"]) == 3


@pytest.mark.slow
def test_two_processes_with_gloo(data_dir, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "igm_fast.train", *tiny_args(data_dir, out, "--device", "cpu", "--eval", "knn")]
    # Own process group: on a timeout the launcher and both ranks are stopped together.
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    assert "2 process(es)" in stdout
    ckpt = torch.load(out / "checkpoint_last.pt", weights_only=True)
    assert len(ckpt["rng"]) == 2 and ckpt["epoch"] == 2
    train = [r for r in read_metrics(out) if r["kind"] == "train"]
    assert train and all(math.isfinite(r["loss"]) for r in train)
    assert "knn_top1" in json.loads((out / "summary.json").read_text())
