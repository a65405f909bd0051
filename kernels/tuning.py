"""Autotune config spaces shared by the Triton kernels.

Each autotuned kernel has a SPACE (its candidate configs, best first) and a `footprint`
estimate of one config at the call's D and dtype: (registers per thread, shared memory bytes). At run time the autotuner gets
- under TRITON_INTERPRET=1: one config (interpreted, never benchmarked);
- IGM_AUTOTUNE=quick: the first config of SPACE that fits (compiled once, no benchmarking), for
  tests on a GPU lease with a cold cache;
- IGM_AUTOTUNE=full (default): every config that fits, benchmarked once per key.
A config fits when its estimate stays within REGISTER_BUDGET and SHARED_BUDGET; the estimates are
calibrated on igm_fast.kernels.aot, which compiles the configs for sm_90 and reads their real
register, spill and shared-memory use (tests/test_kernel_aot.py checks that what fits compiles
without spilling), so configs that would spill never reach the autotuner.
"""
import os

MODES = ("full", "quick")


def interpreting():
    return os.environ.get("TRITON_INTERPRET") == "1"


def autotune_mode():
    mode = os.environ.get("IGM_AUTOTUNE", "full")
    if mode not in MODES:
        raise ValueError(f"IGM_AUTOTUNE={mode!r}; expected one of {MODES}")
    return mode


def configs(space, interpreter_config):
    """What @triton.autotune gets: the whole space, or the interpreter's single config."""
    return [interpreter_config] if interpreting() else list(space)


REGISTER_BUDGET = 128  # estimated 32-bit registers per thread; ptxas adds addresses and temporaries
SHARED_BUDGET = 227 * 1024  # per block on sm_90


def fitting(space, footprint, named_args, meta):
    """The configs of `space` within budget, in order; never empty: when none is, the one with the
    fewest estimated registers among those within shared memory stands in."""
    sizes = [(c, *footprint(c, named_args, meta)) for c in space]
    kept = [c for c, regs, shared in sizes if regs <= REGISTER_BUDGET and shared <= SHARED_BUDGET]
    if kept:
        return kept
    in_shared = [(regs, i) for i, (c, regs, shared) in enumerate(sizes) if shared <= SHARED_BUDGET] or [(0, -1)]
    return [space[min(in_shared)[1]]]


def pruner(footprint):
    """early_config_prune for @triton.autotune: the configs that fit, or only the first in quick mode."""
    def prune(configs, named_args, **meta):
        kept = fitting(configs, footprint, named_args, meta)
        return kept[:1] if autotune_mode() == "quick" else kept
    return prune
