"""Shared test setup: Triton runs in interpreter mode without a GPU; real data from ../shared."""
import os
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # must be set before triton is imported

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_path(*parts):
    """A path under ../shared/data, or a skip naming what is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent (tests read ../shared/data beside the repo)")
    return path


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
