"""Configs: defaults <- YAML preset <- CLI overrides, with unknown keys rejected.

A config is a flat dict of named keys (e.g. `mask_ratio`, `lr`). Presets in configs/*.yaml
may `inherit:` another preset by file name. CLI overrides come as `key=value` strings whose
values are parsed as YAML (so `lr=1e-3`, `eval=[knn,linear]` work).
"""
from pathlib import Path

import yaml

from igm_fast.io import InputError, atomic_write_text

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def find_preset(name):
    """A preset by path or by name in configs/ (with or without .yaml)."""
    for cand in (Path(name), CONFIG_DIR / name, CONFIG_DIR / f"{name}.yaml"):
        if cand.is_file():
            return cand
    raise InputError(f"{name}: no such config file (looked in . and {CONFIG_DIR})")


def read_yaml(path, _seen=()):
    path = Path(path)
    if path in _seen:
        raise InputError(f"{path}: inherit cycle {[str(p) for p in _seen]}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise InputError(f"{path}: invalid YAML: {e}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of config keys, found {type(data).__name__}")
    parent = data.pop("inherit", None)
    if parent is None:
        return data
    base = read_yaml(find_preset(parent) if not (path.parent / parent).is_file() else path.parent / parent,
                     _seen + (path,))
    return {**base, **data}


def parse_overrides(items):
    out = {}
    for item in items or ():
        if "=" not in item:
            raise InputError(f"override {item!r}: expected key=value")
        key, value = item.split("=", 1)
        out[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return out


def merge(defaults, *layers, source="config"):
    """Later layers win; any key absent from `defaults` is an error naming where it came from."""
    cfg = dict(defaults)
    for layer, name in layers:
        unknown = sorted(set(layer) - set(defaults))
        if unknown:
            raise InputError(f"{name}: unknown config keys {unknown}; known keys: {sorted(defaults)}")
        cfg.update({k: v for k, v in layer.items() if v is not None})
    return cfg


def save_config(cfg, path):
    atomic_write_text(yaml.safe_dump(dict(cfg), sort_keys=True), path)
