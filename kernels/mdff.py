"""Fused MDFF high-pass, flash-attention style: out = (1+eta)*z - eta * softmax(scale * z z^T) z.

z is (B, L, D): B bodies of L tokens. Queries, keys and values are all z, so each z tile is
loaded once per step and serves as both key and value; the (L, L) attention matrix is never
stored. The forward saves only the row log-sum-exp (B, L) fp32 beside its output.

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
import contextlib
import math
import os

import torch
import triton
import triton.language as tl

SUPPORTED_D = (32, 64, 128, 256)
SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
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


@triton.autotune(configs=_tile_configs((64, 128), (32, 64), ((4, 2), (8, 3))), key=["L", "D"])
@triton.jit
def _mdff_fwd_kernel(Z, OUT, LSE, L, eta, scale,
                     D: tl.constexpr, DOT_PRECISION: tl.constexpr,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """One program per (body, block of BLOCK_M tokens)."""
    qk_scale = scale * LOG2E
    num_m = tl.cdiv(L, BLOCK_M)
    body = tl.program_id(0) // num_m
    offs_m = (tl.program_id(0) % num_m) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, D)
    z_body = Z + body.to(tl.int64) * L * D
    row_ok = offs_m < L
    z_m = tl.load(z_body + offs_m[:, None] * D + offs_d[None, :], mask=row_ok[:, None], other=0.0)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)  # running row max (log2 units)
    l_i = tl.zeros([BLOCK_M], tl.float32)  # running sum of exp2(s - m_i)
    acc = tl.zeros([BLOCK_M, D], tl.float32)
    for start_n in range(0, L, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        col_ok = offs_n < L
        z_n = tl.load(z_body + offs_n[:, None] * D + offs_d[None, :], mask=col_ok[:, None], other=0.0)
        s = tl.dot(z_m, tl.trans(z_n), input_precision=DOT_PRECISION) * qk_scale
        s = tl.where(col_ok[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))  # finite: column 0 of the first tile is always valid
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = tl.dot(p.to(z_n.dtype), z_n, acc * alpha[:, None], input_precision=DOT_PRECISION)
        m_i = m_new

    out = (1 + eta) * z_m.to(tl.float32) - eta * (acc / l_i[:, None])
    tl.store(OUT + body.to(tl.int64) * L * D + offs_m[:, None] * D + offs_d[None, :],
             out.to(OUT.dtype.element_ty), mask=row_ok[:, None])
    tl.store(LSE + body.to(tl.int64) * L + offs_m, (m_i + tl.log2(l_i)) * LN2, mask=row_ok)


@triton.jit
def _mdff_bwd_delta_kernel(G, Z, OUT, DELTA, n_rows, one_plus_eta, D: tl.constexpr, BLOCK_R: tl.constexpr):
    """Delta_i = g_i . (out_i - (1+eta) z_i) = dO_i . O_i over all B*L token rows."""
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    ok = rows < n_rows
    offs = rows.to(tl.int64)[:, None] * D + tl.arange(0, D)[None, :]
    g = tl.load(G + offs, mask=ok[:, None], other=0.0).to(tl.float32)
    z = tl.load(Z + offs, mask=ok[:, None], other=0.0).to(tl.float32)
    out = tl.load(OUT + offs, mask=ok[:, None], other=0.0).to(tl.float32)
    tl.store(DELTA + rows, tl.sum(g * (out - one_plus_eta * z), 1), mask=ok)


@triton.autotune(configs=_tile_configs((32, 64, 128), (32, 64), ((4, 2), (8, 2))), key=["L", "D"])
@triton.jit
def _mdff_bwd_kernel(Z, G, LSE, DELTA, DZ, L, eta, scale,
                     D: tl.constexpr, DOT_PRECISION: tl.constexpr,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """One program per (body, block m of tokens): dz_m in one pass over all key blocks n."""
    qk_scale = scale * LOG2E
    num_m = tl.cdiv(L, BLOCK_M)
    body = tl.program_id(0) // num_m
    offs_m = (tl.program_id(0) % num_m) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, D)
    z_body = Z + body.to(tl.int64) * L * D
    g_body = G + body.to(tl.int64) * L * D
    row_ok = offs_m < L
    z_m = tl.load(z_body + offs_m[:, None] * D + offs_d[None, :], mask=row_ok[:, None], other=0.0)
    g_m = tl.load(g_body + offs_m[:, None] * D + offs_d[None, :], mask=row_ok[:, None], other=0.0)
    # lse = +inf beyond L makes those rows' probabilities exactly 0.
    lse_m = tl.load(LSE + body.to(tl.int64) * L + offs_m, mask=row_ok, other=float("inf")) * LOG2E
    delta_m = tl.load(DELTA + body.to(tl.int64) * L + offs_m, mask=row_ok, other=0.0)

    acc = tl.zeros([BLOCK_M, D], tl.float32)
    for start_n in range(0, L, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        col_ok = offs_n < L
        z_n = tl.load(z_body + offs_n[:, None] * D + offs_d[None, :], mask=col_ok[:, None], other=0.0)
        g_n = tl.load(g_body + offs_n[:, None] * D + offs_d[None, :], mask=col_ok[:, None], other=0.0)
        lse_n = tl.load(LSE + body.to(tl.int64) * L + offs_n, mask=col_ok, other=float("inf")) * LOG2E
        delta_n = tl.load(DELTA + body.to(tl.int64) * L + offs_n, mask=col_ok, other=0.0)

        s = tl.dot(z_m, tl.trans(z_n), input_precision=DOT_PRECISION) * qk_scale  # S[m, n], log2 units
        p_mn = tl.where(col_ok[None, :], tl.exp2(s - lse_m[:, None]), 0.0)  # P[m, n]: rows m over keys n
        p_nm_t = tl.exp2(s - lse_n[None, :])  # P[n, m]^T: rows n over keys m, stored [m, n]
        dp_mn = -eta * tl.dot(g_m, tl.trans(z_n), input_precision=DOT_PRECISION)  # dO_i . z_j, i in m
        dp_nm_t = -eta * tl.dot(z_m, tl.trans(g_n), input_precision=DOT_PRECISION)  # dO_i . z_j, i in n
        ds = p_mn * (dp_mn - delta_m[:, None]) + p_nm_t * (dp_nm_t - delta_n[None, :])
        acc = tl.dot((scale * ds).to(z_n.dtype), z_n, acc, input_precision=DOT_PRECISION)  # dQ + dK
        acc = tl.dot((-eta * p_nm_t).to(g_n.dtype), g_n, acc, input_precision=DOT_PRECISION)  # dV

    dz = (1 + eta) * g_m.to(tl.float32) + acc
    tl.store(DZ + body.to(tl.int64) * L * D + offs_m[:, None] * D + offs_d[None, :],
             dz.to(DZ.dtype.element_ty), mask=row_ok[:, None])


def _dot_precision(dtype):
    """fp32 inputs follow torch's matmul setting (TF32 only when torch allows it for matmuls),
    so the fused op and the eager reference round the same way."""
    if dtype == torch.float32 and not torch.backends.cuda.matmul.allow_tf32:
        return "ieee"
    return "tf32"  # ignored by Triton for 16-bit inputs


def _device_guard(t):
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


@torch.library.custom_op("igm_fast::mdff_highpass_fwd", mutates_args=())
def mdff_highpass_fwd(z: torch.Tensor, eta: float, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns out (B, L, D) in z's dtype and the row log-sum-exp of scale * z z^T, (B, L) fp32."""
    z = z.contiguous()
    B, L, D = z.shape
    out = torch.empty_like(z)
    lse = torch.empty((B, L), dtype=torch.float32, device=z.device)
    if z.numel() == 0:
        return out, lse
    with _device_guard(z):
        _mdff_fwd_kernel[lambda meta: (B * triton.cdiv(L, meta["BLOCK_M"]),)](
            z, out, lse, L, eta, scale, D=D, DOT_PRECISION=_dot_precision(z.dtype))
    return out, lse


@mdff_highpass_fwd.register_fake
def _(z, eta, scale):
    return z.new_empty(z.shape), z.new_empty(z.shape[:2], dtype=torch.float32)


@torch.library.custom_op("igm_fast::mdff_highpass_bwd", mutates_args=())
def mdff_highpass_bwd(grad: torch.Tensor, z: torch.Tensor, out: torch.Tensor, lse: torch.Tensor,
                      eta: float, scale: float) -> torch.Tensor:
    """dz of mdff_highpass_fwd's out for upstream gradient `grad`, recomputing the score tiles."""
    # A gradient can arrive expanded (stride 0, e.g. from .sum()): the kernels assume dense rows.
    grad, z, out, lse = grad.contiguous(), z.contiguous(), out.contiguous(), lse.contiguous()
    B, L, D = z.shape
    dz = torch.empty_like(z)
    if z.numel() == 0:
        return dz
    delta = torch.empty((B, L), dtype=torch.float32, device=z.device)
    with _device_guard(z):
        block_r = 32
        _mdff_bwd_delta_kernel[(triton.cdiv(B * L, block_r),)](grad, z, out, delta, B * L, 1 + eta,
                                                                D=D, BLOCK_R=block_r)
        _mdff_bwd_kernel[lambda meta: (B * triton.cdiv(L, meta["BLOCK_M"]),)](
            z, grad, lse, delta, dz, L, eta, scale, D=D, DOT_PRECISION=_dot_precision(z.dtype))
    return dz


@mdff_highpass_bwd.register_fake
def _(grad, z, out, lse, eta, scale):
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
    """(1+eta)*z - eta * softmax(scale * z z^T, dim=-1) z for z (B, L, D), fused; differentiable in z."""
    if not isinstance(z, torch.Tensor) or z.ndim != 3:
        raise ValueError(f"mdff_highpass_triton: z must be a (B, L, D) tensor, got "
                         f"{tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__}")
    if z.shape[-1] not in SUPPORTED_D:
        raise ValueError(f"mdff_highpass_triton: D = {z.shape[-1]} is not supported; D must be one of {SUPPORTED_D}")
    if z.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"mdff_highpass_triton: dtype {z.dtype} is not supported; use one of {SUPPORTED_DTYPES}")
    if not z.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError(f"mdff_highpass_triton: z is on {z.device}; the Triton kernel needs a CUDA tensor "
                           f"(or TRITON_INTERPRET=1 for the CPU interpreter)")
    return mdff_highpass_fwd(z.contiguous(), float(eta), float(scale))[0]
