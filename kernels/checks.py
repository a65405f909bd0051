"""Input checks, stride normalisation, the device guard and tl.dot settings shared by the Triton
ops' wrappers."""
import contextlib
import os

import torch
import triton

SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def check_tensors(op, tensors):
    """tensors: {argument name: tensor}. One device, a CUDA one (or the CPU under the Triton
    interpreter), and dtypes the kernels load; otherwise one error naming the arguments."""
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) != 1:
        raise ValueError(f"{op}: all inputs must be on one device; got {devices}")
    device = next(iter(devices.values()))
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError(f"{op}: inputs are on {device}; the Triton kernel needs CUDA tensors "
                           "(or TRITON_INTERPRET=1 to interpret it on the CPU)")
    bad = {name: t.dtype for name, t in tensors.items() if t.dtype not in SUPPORTED_DTYPES}
    if bad:
        raise TypeError(f"{op} (Triton): supported dtypes are {SUPPORTED_DTYPES}; got {bad}")


def device_guard(t):
    """Launch on t's GPU, not the current one (a process may see several)."""
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def unit_last_stride(t):
    """t itself when its last dimension is dense, else a contiguous copy. Kernels honour the other
    strides (a slice of rows is read in place); an expanded stride-0 gradient (from .sum() or
    .mean()) must not reach a kernel that steps through it element by element (DESIGN.md section 4)."""
    return t if t.stride(-1) == 1 else t.contiguous()


def dot_block(n):
    """Tile size covering n elements of a tl.dot dimension (power of two, at least 16)."""
    return max(16, triton.next_power_of_2(n))


def dot_precision(dtype):
    """input_precision for an fp32 tl.dot (16-bit dots ignore it): torch's CUDA matmul setting
    decides, so a kernel rounds as the eager reference does: TF32 where torch allows it
    (allow_tf32, set_float32_matmul_precision("high"), fp32_precision = "tf32"), else IEEE.
    tf32x3 (about fp32 accuracy on tensor cores) was measured and rejected as the default: at
    D=256 it spills on sm_90 in every MDFF and similarity_kl tile that fits otherwise (2.7-12 KB
    of stack, python -m igm_fast.kernels.aot). Under --amp the kernels get bf16 instead
    (autocast_dtype). Reads the fp32_precision API, which also reflects the legacy setters (the
    legacy getters raise once the new API has been used)."""
    return "tf32" if dtype != torch.float32 or torch.backends.cuda.matmul.fp32_precision == "tf32" else "ieee"


def autocast_dtype(t):
    """The dtype a kernel should compute t in: autocast's lower-precision dtype when autocast is on
    for t's device and t is fp32 (what autocast does to an eager matmul's inputs), else t's own.
    Custom ops are not autocast by torch, so the wrappers ask."""
    if t.dtype == torch.float32 and torch.is_autocast_enabled(t.device.type):
        return torch.get_autocast_dtype(t.device.type)
    return t.dtype
