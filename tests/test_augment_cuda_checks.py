"""The CUDA augmentation op rejects bad input exactly as the CPU op does (csrc/augment_cuda_ops.cpp)."""
import pytest
import torch

from igm_fast import augment


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="GPU test: no CUDA device here")])])
@pytest.mark.parametrize("bad", [0, -3])
def test_sample_params_rejects_a_sample_without_valid_frames(device, bad):
    valid = torch.tensor([40, 64, bad, 100], device=device)
    with pytest.raises(RuntimeError, match=rf"valid_len\[2\] = {bad}; every sample needs at least one valid frame"):
        augment.sample_params(valid, train=True, seed=0, epoch=1, indices=torch.arange(4, device=device))
