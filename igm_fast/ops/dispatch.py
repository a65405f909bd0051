"""Which implementation an op call takes."""
import os

CHOICES = ("auto", "triton", "eager")


def use_triton(kernels, *tensors):
    """True if the Triton kernel should run for these tensors.

    `auto` takes Triton on CUDA tensors only; `triton` on CPU needs TRITON_INTERPRET=1
    (Triton's interpreter, for tests at small shapes).
    """
    if kernels not in CHOICES:
        raise ValueError(f"kernels={kernels!r}; expected one of {CHOICES}")
    if kernels == "eager":
        return False
    on_cuda = all(t.is_cuda for t in tensors)
    if kernels == "auto":
        return on_cuda
    if not on_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("kernels='triton' on CPU tensors needs TRITON_INTERPRET=1 (Triton interpreter)")
    return True
