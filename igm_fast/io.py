"""Safe file IO: atomic writes (temp file + rename) and validated checkpoint loads."""
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch


_UMASK = os.umask(0)
os.umask(_UMASK)


class InputError(ValueError):
    """A file that cannot be used as input; the message names the file and what was wrong."""


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds.

    An interrupted write never leaves a truncated file under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the permissions open() would
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_torch_save(obj, path):
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def atomic_write_text(text, path):
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def atomic_write_json(obj, path):
    atomic_write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", path)


def load_checkpoint(path, required_keys=()):
    """torch.load with weights_only=True (a checkpoint must not run code) and clear errors."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, pickle with code, not a torch file at all
        raise InputError(f"{path}: not a readable torch checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise InputError(f"{path}: expected a dict checkpoint, found {type(obj).__name__}")
    missing = [k for k in required_keys if k not in obj]
    if missing:
        raise InputError(f"{path}: checkpoint lacks keys {missing} (has {sorted(obj)})")
    return obj


def read_jsonl(path, what):
    """The JSON objects of a JSON-lines file (blank lines skipped); a malformed line is an
    InputError naming the file and line. `what` says what the file should be, for messages."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise InputError(f"{path}: cannot read {what} ({e.strerror})") from None
    records = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
        if not isinstance(rec, dict):
            raise InputError(f"{path}:{lineno}: expected a JSON object, found {type(rec).__name__}")
        records.append((lineno, rec))
    return records
