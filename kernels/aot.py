"""Ahead-of-time compile of the autotuned kernels' configs (and of the fixed config of the fused
AdaLN kernels) for a GPU that is not here.

Triton lowers a kernel to PTX without a driver and assembles it with the ptxas it ships, for any
GPUTarget; cuobjdump (also shipped) reads each cubin's registers per thread and stack frame, and
Triton's metadata gives the dynamic shared memory. A stack frame means local memory: on these
kernels, spilled registers. A config is usable on the target when it has no stack frame and its
shared memory fits.

    python -m igm_fast.kernels.aot [--arch 90] [--all] [--json]

prints one row per (kernel case, config): the configs each kernel's pruning keeps at the paper's
shapes (all of SPACE with --all). tests/test_kernel_aot.py asserts that every kept config compiles
for sm_90 without spilling and within shared memory. Needs TRITON_INTERPRET unset (interpreted
kernels cannot be compiled): run it as its own process.
"""
import argparse
import dataclasses
import json
import os
import re
import subprocess
import tempfile

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton.runtime.autotuner import Autotuner

from igm_fast.kernels import tuning

# Per thread block on sm_90 (H100 / H200): 227 KiB of shared memory, 255 registers per thread.
LIMITS = {90: {"shared": 227 * 1024, "regs": 255}, 80: {"shared": 163 * 1024, "regs": 255}}
_TYPES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


@dataclasses.dataclass
class Case:
    """One call of an autotuned kernel, or of a kernel launched with one fixed config (space holds
    it): its arguments (tensors may be on the meta device, only their dtype matters) and
    constexprs other than the config's."""
    name: str
    kernel: object  # triton Autotuner or JITFunction
    space: list
    footprint: object
    args: dict
    constexprs: dict

    def kept(self, every=False):
        if every:
            return list(self.space)
        return tuning.fitting(self.space, self.footprint, self.args, self.constexprs)


@dataclasses.dataclass
class Compiled:
    case: str
    config: str
    regs: int
    stack: int
    shared: int
    seconds: float

    def problems(self, arch=90):
        limits = LIMITS[arch]
        found = []
        if self.stack:
            found.append(f"spills ({self.stack} B stack)")
        if self.shared > limits["shared"]:
            found.append(f"shared memory {self.shared} B > {limits['shared']} B")
        if self.regs > limits["regs"]:
            found.append(f"{self.regs} registers")
        return found


def _signature(fn, args, constexprs):
    sig, attrs = {}, {}
    for i, name in enumerate(fn.arg_names):
        if name in constexprs:
            sig[name] = "constexpr"
            continue
        value = args[name]
        if isinstance(value, torch.Tensor):
            sig[name] = "*" + _TYPES[value.dtype]
            attrs[(i,)] = [["tt.divisibility", 16]]  # what the runtime sees for torch allocations
        elif isinstance(value, bool):
            sig[name] = "i1"
        elif isinstance(value, int):
            sig[name] = "i32"
            if value % 16 == 0 and value != 0:
                attrs[(i,)] = [["tt.divisibility", 16]]
        else:
            sig[name] = "fp32"
    return sig, attrs


def _cuobjdump():
    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")


def resource_usage(cubin):
    """(registers per thread, stack bytes) of the one function in a cubin."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        text = subprocess.run([_cuobjdump(), "--dump-resource-usage", f.name], check=True,
                              capture_output=True, text=True).stdout
    match = re.search(r"REG:(\d+) STACK:(\d+)", text)
    if not match:
        raise RuntimeError(f"cuobjdump gave no resource usage:\n{text}")
    return int(match.group(1)), int(match.group(2))


def compile_case(case, config, arch=90):
    import time

    fn = case.kernel.fn if isinstance(case.kernel, Autotuner) else case.kernel
    constexprs = {**case.constexprs, **config.kwargs}
    sig, attrs = _signature(fn, case.args, constexprs)
    t0 = time.perf_counter()
    compiled = triton.compile(ASTSource(fn, sig, constexprs=constexprs, attrs=attrs),
                              target=GPUTarget("cuda", arch, 32),
                              options={"num_warps": config.num_warps, "num_stages": config.num_stages})
    seconds = time.perf_counter() - t0
    regs, stack = resource_usage(compiled.asm["cubin"])
    return Compiled(case.name, describe(config), regs, stack, compiled.metadata.shared, seconds)


def describe(config):
    tiles = " ".join(f"{k}={v}" for k, v in config.kwargs.items())
    return f"{tiles} w{config.num_warps} s{config.num_stages}"


def cases():
    from igm_fast.kernels import adaln, mdff, similarity_kl

    return mdff.aot_cases() + similarity_kl.aot_cases() + adaln.aot_cases()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90, choices=sorted(LIMITS))
    parser.add_argument("--all", action="store_true", help="every config of each space, not only the kept ones")
    parser.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    args = parser.parse_args(argv)
    if tuning.interpreting():
        parser.error("TRITON_INTERPRET=1 is set: interpreted kernels cannot be compiled ahead of time")
    if not args.json:
        print(f"{'case':34s} {'config':36s} {'regs':>5s} {'stack':>6s} {'shared':>7s}  problems")
    for case in cases():
        for config in case.kept(every=args.all):
            c = compile_case(case, config, args.arch)
            if args.json:
                print(json.dumps({**dataclasses.asdict(c), "problems": c.problems(args.arch)}), flush=True)
            else:
                print(f"{c.case:34s} {c.config:36s} {c.regs:5d} {c.stack:6d} {c.shared:7d}  "
                      f"{', '.join(c.problems(args.arch)) or 'ok'}", flush=True)


if __name__ == "__main__":
    main()
