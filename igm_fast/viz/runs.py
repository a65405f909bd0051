"""What the run-level pictures read: an eval run's outputs, produced on demand for a training run.

An eval run dir (`python -m igm_fast.eval --out DIR`) holds test_features.npz, test_scores.npz and
eval_summary.json (class names). A training run dir holds encoder.pt and config.yaml (dataset,
data_root): the first picture that needs test outputs runs the KNN protocol into RUN/eval_knn.
"""
import json
from pathlib import Path

import numpy as np
import yaml

from igm_fast.io import InputError

EVAL_SUBDIR = "eval_knn"


def eval_dir(run_dir, need):
    """The directory holding `need` (a file name) for this run, evaluating a training run if needed."""
    run_dir = Path(run_dir)
    for cand in (run_dir, run_dir / EVAL_SUBDIR):
        if (cand / need).is_file():
            return cand
    config = run_dir / "config.yaml"
    if not ((run_dir / "encoder.pt").is_file() and config.is_file()):
        raise InputError(f"{run_dir}: neither an eval run (no {need}) nor a training run (encoder.pt + config.yaml)")
    cfg = yaml.safe_load(config.read_text()) or {}
    if "dataset" not in cfg:
        raise InputError(f"{config}: no 'dataset' key; cannot tell which test set to evaluate")
    from igm_fast.eval.__main__ import main_eval  # deferred: only training runs need the eval stack

    argv = ["--protocol", "knn", "--encoder", str(run_dir / "encoder.pt"), "--dataset", str(cfg["dataset"]),
            "--out", str(run_dir / EVAL_SUBDIR)]
    if cfg.get("data_root"):
        argv += ["--data-root", str(cfg["data_root"])]
    main_eval(argv)
    return run_dir / EVAL_SUBDIR


def class_names(directory, num_classes):
    """Class names recorded by the eval run; numbers when none (or not `num_classes` of them) were."""
    summary = Path(directory) / "eval_summary.json"
    names = json.loads(summary.read_text()).get("class_names") if summary.is_file() else None
    return list(names) if names and len(names) >= num_classes else [str(i) for i in range(num_classes)]


def load_npz(path, keys):
    try:
        data = np.load(path, allow_pickle=False)
        return [data[k] for k in keys]
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"{path}: expected an npz with keys {keys} ({e})") from None
