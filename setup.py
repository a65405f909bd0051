"""Builds igm_fast and its C++/CUDA extension igm_fast._C.

`pip install -e .` / `pip install .` (with or without `--no-build-isolation`) compile the
extension against the torch installed in the target environment: the in-tree build backend
(build_backend/igm_build_backend.py, named in pyproject.toml) makes that torch importable here
instead of letting pip put a different torch into an isolated build environment. torch's C++
API has no stable ABI across releases, so this is the only way the library is sure to load.

The CPU sources (csrc/*.cpp) are always compiled; the CUDA sources (csrc/cuda/*.cu) too when
that torch is a CUDA build and a CUDA toolkit with the same major version is found (torch's
CUDA_HOME / nvcc); otherwise a CPU-only extension is built and the reason printed
(IGM_FORCE_CPU=1 forces CPU-only). Without a visible GPU and without TORCH_CUDA_ARCH_LIST the
CUDA code is compiled for DEFAULT_CUDA_ARCH_LIST.
"""
import glob
import os
import re
import subprocess
import sys

from setuptools import find_packages, setup

# A100 and H100 (the project's GPU machines), plus sm_90 PTX that newer GPUs JIT-compile.
DEFAULT_CUDA_ARCH_LIST = "8.0;9.0+PTX"


def log(msg):
    print(f"igm_fast setup: {msg}", file=sys.stderr, flush=True)


def nvcc_version(cuda_home):
    """(major, minor) of cuda_home's nvcc, or None when it cannot be run."""
    try:
        out = subprocess.run([os.path.join(cuda_home, "bin", "nvcc"), "--version"], capture_output=True,
                             text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"release (\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else None


def cuda_build_plan(torch_cuda, cuda_home, nvcc_ver, have_cu_sources=True, force_cpu=False):
    """(build the CUDA extension?, reason) from torch.version.cuda, CUDA_HOME and nvcc's version."""
    if force_cpu:
        return False, "IGM_FORCE_CPU=1: CPU-only extension"
    if not have_cu_sources:
        return False, "no csrc/cuda/*.cu: CPU-only extension"
    if torch_cuda is None:
        return False, "torch is a CPU build: CPU-only extension"
    if cuda_home is None:
        return False, (f"torch has CUDA {torch_cuda} but no CUDA toolkit (nvcc) was found: CPU-only "
                       "extension; set CUDA_HOME to a toolkit to build the CUDA ops")
    if nvcc_ver is not None and nvcc_ver[0] != int(torch_cuda.split(".")[0]):
        return False, (f"nvcc in {cuda_home} is CUDA {nvcc_ver[0]}.{nvcc_ver[1]} but torch was built with CUDA "
                       f"{torch_cuda} (torch refuses a different major version): CPU-only extension; set "
                       f"CUDA_HOME to a CUDA {torch_cuda.split('.')[0]}.x toolkit to build the CUDA ops")
    return True, f"CUDA extension (torch CUDA {torch_cuda}, toolkit {cuda_home})"


def default_cuda_arch_list(environ, gpu_visible):
    """Sets environ["TORCH_CUDA_ARCH_LIST"] to DEFAULT_CUDA_ARCH_LIST when it is unset and no GPU
    is visible (torch would otherwise derive it from the visible GPUs: an IndexError when there
    are none). Returns the message to print, or None when nothing was changed."""
    if environ.get("TORCH_CUDA_ARCH_LIST", "").strip() or gpu_visible:
        return None
    environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_CUDA_ARCH_LIST
    return (f"no GPU visible and TORCH_CUDA_ARCH_LIST unset: compiling the CUDA kernels for "
            f"TORCH_CUDA_ARCH_LIST=\"{DEFAULT_CUDA_ARCH_LIST}\" (sm_80 A100, sm_90 H100, PTX for newer GPUs). "
            f"For other GPUs set it, e.g. TORCH_CUDA_ARCH_LIST=\"8.6;8.9\" pip install -e .")


def extension():
    import torch
    from torch.utils import cpp_extension

    cpp = sorted(glob.glob("csrc/*.cpp"))
    cu = sorted(glob.glob("csrc/cuda/*.cu"))
    cuda_home = cpp_extension.CUDA_HOME
    use_cuda, reason = cuda_build_plan(
        torch.version.cuda, cuda_home,
        nvcc_version(cuda_home) if (cuda_home and torch.version.cuda) else None,
        have_cu_sources=bool(cu), force_cpu=os.environ.get("IGM_FORCE_CPU", "0") == "1")
    log(f"torch {torch.__version__} from {os.path.dirname(torch.__file__)}; {reason}")
    # No fused multiply-add contraction: crop lengths are floor()ed from a*b+c, and the host
    # must round exactly as the CUDA kernel does (csrc/augment_math.h, mul_add_rn).
    # -fopenmp: at::parallel_for is inlined into the extension and is serial without it.
    # No -std: torch's build helper picks the standard its headers need (C++20 from torch 2.13).
    cxx = ["-O3", "-ffp-contract=off", "-fopenmp"]
    kwargs = dict(
        name="igm_fast._C",
        include_dirs=[os.path.abspath("csrc")],
        # py_limited_api keeps one .so valid across CPython versions (pytorch/extension-cpp);
        # it says nothing about torch's C++ ABI, hence the build against the installed torch.
        py_limited_api=True,
        extra_link_args=["-fopenmp"],
    )
    if use_cuda:
        msg = default_cuda_arch_list(os.environ, torch.cuda.is_available() and torch.cuda.device_count() > 0)
        if msg:
            log(msg)
        return cpp_extension.CUDAExtension(
            sources=cpp + cu,
            define_macros=[("IGM_WITH_CUDA", "1"), ("Py_LIMITED_API", "0x030A0000")],
            # -fmad=false: nvcc would contract a*b+c into FMAs and the CUDA augmentation would
            # differ from the CPU op in the last bits (issue 10); same as -ffp-contract=off.
            extra_compile_args={"cxx": cxx, "nvcc": ["-O3", "-fmad=false"]},
            **kwargs,
        )
    return cpp_extension.CppExtension(
        sources=cpp,
        define_macros=[("Py_LIMITED_API", "0x030A0000")],
        extra_compile_args={"cxx": cxx},
        **kwargs,
    )


def main():
    from torch.utils import cpp_extension

    packages = find_packages(include=["igm_fast", "igm_fast.*"]) + ["igm_fast.kernels"]
    setup(
        packages=packages,
        package_dir={"igm_fast.kernels": "kernels"},
        ext_modules=[extension()] if glob.glob("csrc/*.cpp") else [],
        cmdclass={"build_ext": cpp_extension.BuildExtension},
        options={"bdist_wheel": {"py_limited_api": "cp310"}},
    )


# setuptools' build backend runs this file as __main__; tests load the helpers above without building.
if __name__ == "__main__":
    main()
