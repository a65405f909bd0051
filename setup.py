"""Builds igm_fast and its C++/CUDA extension igm_fast._C.

The CPU sources (csrc/*.cpp) are always compiled; the CUDA sources (csrc/cuda/*.cu) only
when the installed torch is a CUDA build and nvcc is found, so a CPU machine builds
a CPU-only extension instead of failing. Install with `pip install --no-build-isolation -e .`
so the extension is compiled against the torch already in the environment.
"""
import glob
import os

from setuptools import find_packages, setup
from torch.utils import cpp_extension


def extension():
    cpp = sorted(glob.glob("csrc/*.cpp"))
    cu = sorted(glob.glob("csrc/cuda/*.cu"))
    use_cuda = (
        os.environ.get("IGM_FORCE_CPU", "0") != "1"
        and cpp_extension.CUDA_HOME is not None
        and __import__("torch").version.cuda is not None
        and bool(cu)
    )
    # No fused multiply-add contraction: crop lengths are floor()ed from a*b+c, and the host
    # must round exactly as the CUDA kernel does (csrc/augment_math.h, mul_add_rn).
    # -fopenmp: at::parallel_for is inlined into the extension and is serial without it.
    # No -std: torch's build helper picks the standard its headers need (C++20 from torch 2.13).
    cxx = ["-O3", "-ffp-contract=off", "-fopenmp"]
    kwargs = dict(
        name="igm_fast._C",
        include_dirs=[os.path.abspath("csrc")],
        # py_limited_api keeps one .so valid across CPython versions (pytorch/extension-cpp).
        py_limited_api=True,
        extra_link_args=["-fopenmp"],
    )
    if use_cuda:
        return cpp_extension.CUDAExtension(
            sources=cpp + cu,
            define_macros=[("IGM_WITH_CUDA", "1"), ("Py_LIMITED_API", "0x030A0000")],
            extra_compile_args={"cxx": cxx, "nvcc": ["-O3"]},
            **kwargs,
        )
    return cpp_extension.CppExtension(
        sources=cpp,
        define_macros=[("Py_LIMITED_API", "0x030A0000")],
        extra_compile_args={"cxx": cxx},
        **kwargs,
    )


packages = find_packages(include=["igm_fast", "igm_fast.*"]) + ["igm_fast.kernels"]
setup(
    packages=packages,
    package_dir={"igm_fast.kernels": "kernels"},
    ext_modules=[extension()] if glob.glob("csrc/*.cpp") else [],
    cmdclass={"build_ext": cpp_extension.BuildExtension},
    options={"bdist_wheel": {"py_limited_api": "cp310"}},
)
