"""Fused MDFF high-pass, flash-attention style: out = (1+eta)*z - eta * softmax(scale * z z^T) z.

z is (B, L, D): B bodies of L tokens. Queries, keys and values are all z, so each z tile is
loaded once per step and serves as both key and value; the (L, L) attention matrix is never
stored. The forward saves only the row log-sum-exp (B, L) fp32 beside its output. Any L (tile
edges masked), any D up to 256 (tiles zero-padded to a power of two), fp32 / bf16 / fp16 inputs
with fp32 accumulation.

Backward, with P = softmax(S), S = scale z z^T, dO = -eta * g and O = P z:
    dS_ij   = P_ij (dO_i . z_j - Delta_i),   Delta_i = dO_i . O_i = g_i . (out_i - (1+eta) z_i)
    dz      = (1+eta) g + dQ + dK + dV
    dQ_m    = scale * sum_n dS[m, n] z_n       (tokens m as queries)
    dK_m    = scale * sum_n dS[n, m]^T z_n     (tokens m as keys)
    dV_m    =         sum_n P[n, m]^T dO_n     (tokens m as values)
S is symmetric, so the one score tile z_m z_n^T gives both P[m, n] (rows m, with lse_m) and
P[n, m]^T (rows n, with lse_n): a program owning token block m makes a single pass over n and
accumulates all of dz_m in one register tile. No atomics, deterministic, O(B*L) extra memory.

Registered as torch.library custom ops (forward returns out and lse; backward is its own op) with
fake and autograd registrations: this form traces under torch.compile(fullgraph=True), also with
the Triton interpreter on CPU, where triton_op does not (DESIGN.md section 4).
"""
import math
import os

import torch
import triton
import triton.language as tl

from igm_fast.kernels.checks import check_tensors, device_guard, dot_block, dot_precision

MAX_D = 256  # a tile keeps whole token rows in registers
# Scores run in base 2 (exp2 is the hardware instruction); lse is stored in natural-log units.
LOG2E = tl.constexpr(math.log2(math.e))
LN2 = tl.constexpr(math.log(2.0))


def _tile_configs(block_ms, block_ns, warps_stages):
    if os.environ.get("TRITON_INTERPRET") == "1":
        # One config (the autotuner then never benchmarks); BLOCK_M != BLOCK_N so a
        # transposed-tile mistake cannot hide behind square tiles.
        return [triton.Config({"BLOCK_M": 32, "BLOCK_N": 16})]
    return [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
            for bm in block_ms for bn in block_ns for w, s in warps_stages]


def _footprint(config, block_d, elem_bytes, backward):
    """Rough bytes a program keeps in registers and shared memory. Forward: its z tile and fp32
    accumulator (BLOCK_M x D), one score tile, pipelined key tiles. Backward: z, g and the fp32
    accumulator, ~4 score-sized fp32 tiles, pipelined z and g key tiles."""
    bm, bn = config.kwargs["BLOCK_M"], config.kwargs["BLOCK_N"]
    row_bytes = (2 if backward else 1) * elem_bytes + 4
    registers = bm * block_d * row_bytes + (4 if backward else 1) * bm * bn * 4
    shared = config.num_stages * (2 if backward else 1) * bn * block_d * elem_bytes
    return registers, shared


def _prune_tiles(backward):
    """Autotuner pre-filter (ahead of any compile): keep tiles that fill between a quarter of and
    all of ~200 registers per thread and fit shared memory, so D=256 does not try tiles that spill
    and D=32 does not try tiles that leave the SM idle; always keep at least the smallest."""
    def prune(configs, named_args, **kwargs):
        sizes = {c: _footprint(c, kwargs["BLOCK_D"], named_args["Z"].element_size(), backward) for c in configs}
        kept = [c for c, (regs, shared) in sizes.items()
                if c.num_warps * 32 * 200 * 4 // 4 <= regs <= c.num_warps * 32 * 200 * 4 and shared <= 160 * 1024]
        return kept or [min(configs, key=lambda c: sizes[c])]
    return prune


@triton.jit
def _load_rows(ptr, rows, n_rows, D: tl.constexpr, BLOCK_D: tl.constexpr):
    """Rows `rows` of a row-major (n_rows, D) array as a (len(rows), BLOCK_D) tile; zeros beyond
    n_rows and D, so padded tokens and dimensions add nothing to any dot product."""
    dims = tl.arange(0, BLOCK_D)
    mask = (rows < n_rows)[:, None]
    if BLOCK_D != D:
        mask = mask & (dims < D)[None, :]
    return tl.load(ptr + rows[:, None] * D + dims[None, :], mask=mask, other=0.0)


@triton.jit
def _store_rows(ptr, rows, n_rows, tile, D: tl.constexpr, BLOCK_D: tl.constexpr):
    dims = tl.arange(0, BLOCK_D)
    mask = (rows < n_rows)[:, None]
    if BLOCK_D != D:
        mask = mask & (dims < D)[None, :]
    tl.store(ptr + rows[:, None] * D + dims[None, :], tile.to(ptr.dtype.element_ty), mask=mask)


@triton.jit
def _program_tokens(L, BLOCK_M: tl.constexpr):
    """The body (int64, for offsets) and the BLOCK_M token indices this program owns; programs
    run body-major over ceil(L / BLOCK_M) token blocks per body."""
    num_m = tl.cdiv(L, BLOCK_M)
    return (tl.program_id(0) // num_m).to(tl.int64), (tl.program_id(0) % num_m) * BLOCK_M + tl.arange(0, BLOCK_M)


@triton.autotune(configs=_tile_configs((16, 32, 64, 128), (32, 64), ((4, 2), (8, 3))), key=["L", "D"],
                 prune_configs_by={"early_config_prune": _prune_tiles(backward=False)})
@triton.jit
def _mdff_fwd_kernel(Z, OUT, LSE, L, eta, scale,
                     D: tl.constexpr, BLOCK_D: tl.constexpr, DOT_PRECISION: tl.constexpr,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """One program per (body, block of BLOCK_M tokens)."""
    qk_scale = scale * LOG2E
    body, offs_m = _program_tokens(L, BLOCK_M)
    z_body = Z + body * L * D
    z_m = _load_rows(z_body, offs_m, L, D, BLOCK_D)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)  # running row max (log2 units)
    l_i = tl.zeros([BLOCK_M], tl.float32)  # running sum of exp2(s - m_i)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for start_n in range(0, L, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        z_n = _load_rows(z_body, offs_n, L, D, BLOCK_D)  # keys and values at once
        s = tl.dot(z_m, tl.trans(z_n), input_precision=DOT_PRECISION) * qk_scale
        s = tl.where((offs_n < L)[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))  # finite: column 0 of the first tile is always valid
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = tl.dot(p.to(z_n.dtype), z_n, acc * alpha[:, None], input_precision=DOT_PRECISION)
        m_i = m_new

    out = (1 + eta) * z_m.to(tl.float32) - eta * (acc / l_i[:, None])
    _store_rows(OUT + body * L * D, offs_m, L, out, D, BLOCK_D)
    tl.store(LSE + body * L + offs_m, (m_i + tl.log2(l_i)) * LN2, mask=offs_m < L)


@triton.jit
def _mdff_bwd_delta_kernel(G, Z, OUT, DELTA, n_rows, one_plus_eta,
                           D: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_R: tl.constexpr):
    """Delta_i = g_i . (out_i - (1+eta) z_i) = dO_i . O_i over all B*L token rows."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    g = _load_rows(G, rows, n_rows, D, BLOCK_D).to(tl.float32)
    z = _load_rows(Z, rows, n_rows, D, BLOCK_D).to(tl.float32)
    out = _load_rows(OUT, rows, n_rows, D, BLOCK_D).to(tl.float32)
    tl.store(DELTA + rows, tl.sum(g * (out - one_plus_eta * z), 1), mask=rows < n_rows)


@triton.autotune(configs=_tile_configs((16, 32, 64), (16, 32, 64), ((4, 2), (8, 2))), key=["L", "D"],
                 prune_configs_by={"early_config_prune": _prune_tiles(backward=True)})
@triton.jit
def _mdff_bwd_kernel(Z, G, LSE, DELTA, DZ, L, eta, scale,
                     D: tl.constexpr, BLOCK_D: tl.constexpr, DOT_PRECISION: tl.constexpr,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """One program per (body, block m of tokens): dz_m in one pass over all key blocks n."""
    qk_scale = scale * LOG2E
    body, offs_m = _program_tokens(L, BLOCK_M)
    z_body, g_body, lse_body, delta_body = Z + body * L * D, G + body * L * D, LSE + body * L, DELTA + body * L
    z_m = _load_rows(z_body, offs_m, L, D, BLOCK_D)
    g_m = _load_rows(g_body, offs_m, L, D, BLOCK_D)
    # lse = +inf beyond L makes those rows' probabilities exactly 0.
    lse_m = tl.load(lse_body + offs_m, mask=offs_m < L, other=float("inf")) * LOG2E
    delta_m = tl.load(delta_body + offs_m, mask=offs_m < L, other=0.0)

    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for start_n in range(0, L, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        z_n = _load_rows(z_body, offs_n, L, D, BLOCK_D)
        g_n = _load_rows(g_body, offs_n, L, D, BLOCK_D)
        lse_n = tl.load(lse_body + offs_n, mask=offs_n < L, other=float("inf")) * LOG2E
        delta_n = tl.load(delta_body + offs_n, mask=offs_n < L, other=0.0)

        s = tl.dot(z_m, tl.trans(z_n), input_precision=DOT_PRECISION) * qk_scale  # S[m, n], log2 units
        p_mn = tl.where((offs_n < L)[None, :], tl.exp2(s - lse_m[:, None]), 0.0)  # P[m, n]: rows m over keys n
        p_nm_t = tl.exp2(s - lse_n[None, :])  # P[n, m]^T: rows n over keys m, stored [m, n]
        dp_mn = -eta * tl.dot(g_m, tl.trans(z_n), input_precision=DOT_PRECISION)  # dO_i . z_j, i in m
        dp_nm_t = -eta * tl.dot(z_m, tl.trans(g_n), input_precision=DOT_PRECISION)  # dO_i . z_j, i in n
        ds = p_mn * (dp_mn - delta_m[:, None]) + p_nm_t * (dp_nm_t - delta_n[None, :])
        acc = tl.dot((scale * ds).to(z_n.dtype), z_n, acc, input_precision=DOT_PRECISION)  # dQ + dK
        acc = tl.dot((-eta * p_nm_t).to(g_n.dtype), g_n, acc, input_precision=DOT_PRECISION)  # dV

    _store_rows(DZ + body * L * D, offs_m, L, (1 + eta) * g_m.to(tl.float32) + acc, D, BLOCK_D)


def _check(z, **same_shape):
    """Shape, dtype and device of z (and of the tensors that must match it: grad, out), for the
    wrapper, the ops and their fakes alike."""
    if not isinstance(z, torch.Tensor) or z.ndim != 3:
        raise ValueError(f"mdff_highpass: z must be a (B, L, D) tensor, got "
                         f"{tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__}")
    if not 1 <= z.shape[-1] <= MAX_D:
        raise ValueError(f"mdff_highpass: D = {z.shape[-1]} is not supported by the Triton kernel; "
                         f"it needs 1 <= D <= {MAX_D}")
    for name, t in same_shape.items():
        if t.shape != z.shape:
            raise ValueError(f"mdff_highpass: {name} {tuple(t.shape)} must match z {tuple(z.shape)}")
    check_tensors("mdff_highpass", {"z": z, **same_shape})


@torch.library.custom_op("igm_fast::mdff_highpass_fwd", mutates_args=())
def mdff_highpass_fwd(z: torch.Tensor, eta: float, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns out (B, L, D) in z's dtype and the row log-sum-exp of scale * z z^T, (B, L) fp32."""
    _check(z)
    z = z.contiguous()
    B, L, D = z.shape
    out = torch.empty_like(z)
    lse = torch.empty((B, L), dtype=torch.float32, device=z.device)
    if z.numel() == 0:
        return out, lse
    with device_guard(z):
        _mdff_fwd_kernel[lambda meta: (B * triton.cdiv(L, meta["BLOCK_M"]),)](
            z, out, lse, L, eta, scale, D=D, BLOCK_D=dot_block(D), DOT_PRECISION=dot_precision(z.dtype))
    return out, lse


@mdff_highpass_fwd.register_fake
def _(z, eta, scale):
    _check(z)
    return z.new_empty(z.shape), z.new_empty(z.shape[:2], dtype=torch.float32)


@torch.library.custom_op("igm_fast::mdff_highpass_bwd", mutates_args=())
def mdff_highpass_bwd(grad: torch.Tensor, z: torch.Tensor, out: torch.Tensor, lse: torch.Tensor,
                      eta: float, scale: float) -> torch.Tensor:
    """dz of mdff_highpass_fwd's out for upstream gradient `grad`, recomputing the score tiles."""
    _check(z, grad=grad, out=out)
    # A gradient can arrive expanded (stride 0, e.g. from .sum()): the kernels assume dense rows.
    grad, z, out, lse = grad.contiguous(), z.contiguous(), out.contiguous(), lse.contiguous()
    B, L, D = z.shape
    dz = torch.empty_like(z)
    if z.numel() == 0:
        return dz
    delta = torch.empty((B, L), dtype=torch.float32, device=z.device)
    with device_guard(z):
        block_r = 32
        _mdff_bwd_delta_kernel[(triton.cdiv(B * L, block_r),)](
            grad, z, out, delta, B * L, 1 + eta, D=D, BLOCK_D=dot_block(D), BLOCK_R=block_r)
        _mdff_bwd_kernel[lambda meta: (B * triton.cdiv(L, meta["BLOCK_M"]),)](
            z, grad, lse, delta, dz, L, eta, scale, D=D, BLOCK_D=dot_block(D), DOT_PRECISION=dot_precision(z.dtype))
    return dz


@mdff_highpass_bwd.register_fake
def _(grad, z, out, lse, eta, scale):
    _check(z, grad=grad, out=out)
    return z.new_empty(z.shape)


def _setup_context(ctx, inputs, output):
    z, eta, scale = inputs
    out, lse = output
    ctx.save_for_backward(z, out, lse)
    ctx.eta, ctx.scale = eta, scale
    ctx.mark_non_differentiable(lse)


def _backward(ctx, grad_out, _grad_lse):
    z, out, lse = ctx.saved_tensors
    return mdff_highpass_bwd(grad_out, z, out, lse, ctx.eta, ctx.scale), None, None


mdff_highpass_fwd.register_autograd(_backward, setup_context=_setup_context)


def mdff_highpass_triton(z, eta, scale):
    """(1+eta)*z - eta * softmax(scale * z z^T, dim=-1) z for z (B, L, D), fused; differentiable in z
    (eta and scale are numbers: the kernel gives them no gradient)."""
    _check(z)
    if isinstance(eta, torch.Tensor) or isinstance(scale, torch.Tensor):
        raise TypeError("mdff_highpass: eta and scale must be Python numbers for the Triton kernel, "
                        "which computes no gradient for them")
    return mdff_highpass_fwd(z.contiguous(), float(eta), float(scale))[0]
