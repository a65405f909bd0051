"""Fused MDFF high-pass, flash-attention style: out = (1+eta)*z - eta * softmax(scale * z z^T) z.

z is (B, L, D): B bodies of L tokens. Queries, keys and values are all z, so each z tile is
loaded once per step and serves as both key and value; the (L, L) attention matrix is never
stored. The forward saves the row log-sum-exp (B, L) and the attention output O = P z (B, L, D),
both fp32. Any L, any D up to 256 (tiles zero-padded to a power of two), fp32 / bf16 / fp16 inputs
with fp32 accumulation. Key loops run over whole tiles without masks; the ragged last tile, if
any, is one masked step after the loop.

Backward, with P = softmax(S), S = scale z z^T, dO = -eta * g and O = P z:
    dS_ij   = P_ij (dO_i . z_j - Delta_i),   Delta_i = dO_i . O_i
    dz      = (1+eta) g + dQ + dK + dV
    dQ_m    = scale * sum_n dS[m, n] z_n       (tokens m as queries)
    dK_m    = scale * sum_n dS[n, m]^T z_n     (tokens m as keys)
    dV_m    =         sum_n P[n, m]^T dO_n     (tokens m as values)
Delta comes from O itself, as in flash attention, and O is kept in fp32: recovering it from a
16-bit output, out - (1+eta) z, cancels when O is small next to z (spread-out attention), and a
16-bit O loses dO.(z_i - O_i) when attention is nearly diagonal (O_i ~ z_i). Measured on the
bf16 emulation (tests/test_kernel_mdff.py), a bf16 O made dz 3x less accurate than eager bf16.
S is symmetric, so the one score tile z_m z_n^T gives both P[m, n] (rows m, with lse_m) and
P[n, m]^T (rows n, with lse_n): a program owning token block m makes a single pass over n and
accumulates all of dz_m in one register tile. No atomics, deterministic, O(B*L*D) extra memory.

fp32 dots follow torch's matmul setting (TF32 or IEEE, kernels/checks.py dot_precision). Under
torch.autocast the wrapper casts z to the autocast dtype, as autocast does for eager matmuls, so
--amp runs the bf16 kernels.

Registered as torch.library custom ops (forward returns out, O and lse; backward is its own op)
with fake and autograd registrations: this form traces under torch.compile(fullgraph=True), also
with the Triton interpreter on CPU, where triton_op does not (DESIGN.md section 4).
"""
import math

import torch
import triton
import triton.language as tl

from igm_fast.kernels import tuning
from igm_fast.kernels.checks import autocast_dtype, check_tensors, device_guard, dot_block, dot_precision

MAX_D = 256  # a tile keeps whole token rows in registers
# Scores run in base 2 (exp2 is the hardware instruction); lse is stored in natural-log units.
LOG2E = tl.constexpr(math.log2(math.e))
LN2 = tl.constexpr(math.log(2.0))

# Candidate tiles, best first (IGM_AUTOTUNE=quick takes the first that fits). 64- and 128-row
# query tiles: one or two Hopper warpgroups of wgmma rows. The interpreter's single config has
# BLOCK_M != BLOCK_N so that a transposed-tile mistake cannot hide behind square tiles.
FWD_SPACE = [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
             for bm in (128, 64) for bn in (64, 32, 128) for w, s in ((8, 2), (4, 2), (8, 3))]
BWD_SPACE = [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
             for bm in (64, 128) for bn in (32, 64, 16) for w, s in ((8, 2), (4, 2))]
INTERPRETER_CONFIG = triton.Config({"BLOCK_M": 32, "BLOCK_N": 16})


def _footprint(backward):
    """(registers per thread, shared bytes) a config needs, estimated; calibrated on the sm_90
    compiles of igm_fast.kernels.aot (bf16, D=256: 64 x 64 and 64 x 32 forward tiles on 8 warps
    compile without spilling, 128-row tiles and 4 warps spill). Forward: the z_m tile and its fp32
    accumulator, two score-sized fp32 tiles; shared: the z_m tile and num_stages key tiles.
    Backward: z_m, g_m and the accumulator, five score-sized tiles; two pipelined key tiles (z, g)."""
    def footprint(config, named_args, meta):
        bm, bn, bd = config.kwargs["BLOCK_M"], config.kwargs["BLOCK_N"], meta["BLOCK_D"]
        elem = named_args["Z"].element_size()
        threads = 32 * config.num_warps
        rows, scores, key_tiles = (2 * elem + 4, 5, 2) if backward else (elem + 4, 2, 1)
        regs = (bm * bd * rows + scores * bm * bn * 4) / (4 * threads)
        shared = (config.num_stages * key_tiles * bn + bm) * bd * elem
        return regs, shared
    return footprint


@triton.jit
def _operand(x, DTYPE: tl.constexpr, ROUND_BF16: tl.constexpr):
    """x as a tl.dot operand of the input dtype. ROUND_BF16 (tests only) keeps fp32 but rounds to
    bf16 values: the bf16 kernel's arithmetic, emulated where the interpreter cannot do bf16 dots."""
    if ROUND_BF16:
        return x.to(tl.bfloat16).to(tl.float32)
    else:
        return x.to(DTYPE)


@triton.jit
def _load_rows(ptr, rows, n_rows, D: tl.constexpr, BLOCK_D: tl.constexpr, MASKED: tl.constexpr):
    """Rows `rows` of a row-major (n_rows, D) array as a (len(rows), BLOCK_D) tile; zeros beyond
    n_rows (when MASKED) and D, so padded tokens and dimensions add nothing to any dot product."""
    dims = tl.arange(0, BLOCK_D)
    if MASKED:
        mask = (rows < n_rows)[:, None]
        if BLOCK_D != D:
            mask = mask & (dims < D)[None, :]
        return tl.load(ptr + rows[:, None] * D + dims[None, :], mask=mask, other=0.0)
    elif BLOCK_D != D:
        return tl.load(ptr + rows[:, None] * D + dims[None, :], mask=(dims < D)[None, :], other=0.0)
    else:
        return tl.load(ptr + rows[:, None] * D + dims[None, :])


@triton.jit
def _load_row_stat(ptr, rows, n_rows, other, MASKED: tl.constexpr):
    if MASKED:
        return tl.load(ptr + rows, mask=rows < n_rows, other=other)
    else:
        return tl.load(ptr + rows)


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


@triton.jit
def _fwd_step(z_m, z_body, start_n, L, m_i, l_i, acc, qk_scale,
              D: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, PRECISION: tl.constexpr,
              ROUND_BF16: tl.constexpr, MASKED: tl.constexpr):
    """One key tile of the online softmax: keys and values are the same z_n tile."""
    offs_n = start_n + tl.arange(0, BLOCK_N)
    z_n = _load_rows(z_body, offs_n, L, D, BLOCK_D, MASKED)
    s = tl.dot(z_m, tl.trans(z_n), input_precision=PRECISION) * qk_scale
    if MASKED:
        s = tl.where((offs_n < L)[None, :], s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1))  # finite: every tile holds >= 1 valid key
    alpha = tl.exp2(m_i - m_new)
    p = tl.exp2(s - m_new[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = tl.dot(_operand(p, z_n.dtype, ROUND_BF16), z_n, acc * alpha[:, None], input_precision=PRECISION)
    return m_new, l_i, acc


@triton.autotune(configs=tuning.configs(FWD_SPACE, INTERPRETER_CONFIG), key=["L", "D"],
                 prune_configs_by={"early_config_prune": tuning.pruner(_footprint(backward=False))})
@triton.jit
def _mdff_fwd_kernel(Z, OUT, ATTN, LSE, L, eta, scale,
                     D: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr, ROUND_BF16: tl.constexpr,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """One program per (body, block of BLOCK_M tokens)."""
    qk_scale = scale * LOG2E
    body, offs_m = _program_tokens(L, BLOCK_M)
    z_body = Z + body * L * D
    z_m = _load_rows(z_body, offs_m, L, D, BLOCK_D, True)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)  # running row max (log2 units)
    l_i = tl.zeros([BLOCK_M], tl.float32)  # running sum of exp2(s - m_i)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    full = (L // BLOCK_N) * BLOCK_N
    for start_n in range(0, full, BLOCK_N):
        m_i, l_i, acc = _fwd_step(z_m, z_body, start_n, L, m_i, l_i, acc, qk_scale, D, BLOCK_D, BLOCK_N,
                                  PRECISION, ROUND_BF16, False)
    if full < L:
        m_i, l_i, acc = _fwd_step(z_m, z_body, full, L, m_i, l_i, acc, qk_scale, D, BLOCK_D, BLOCK_N,
                                  PRECISION, ROUND_BF16, True)

    attn = acc / l_i[:, None]
    _store_rows(ATTN + body * L * D, offs_m, L, attn, D, BLOCK_D)
    _store_rows(OUT + body * L * D, offs_m, L, (1 + eta) * z_m.to(tl.float32) - eta * attn, D, BLOCK_D)
    tl.store(LSE + body * L + offs_m, (m_i + tl.log2(l_i)) * LN2, mask=offs_m < L)


@triton.jit
def _mdff_bwd_delta_kernel(G, ATTN, DELTA, n_rows, eta,
                           D: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_R: tl.constexpr):
    """Delta_i = dO_i . O_i = -eta * g_i . O_i over all B*L token rows."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    g = _load_rows(G, rows, n_rows, D, BLOCK_D, True).to(tl.float32)
    attn = _load_rows(ATTN, rows, n_rows, D, BLOCK_D, True).to(tl.float32)
    tl.store(DELTA + rows, -eta * tl.sum(g * attn, 1), mask=rows < n_rows)


@triton.jit
def _bwd_step(z_m, g_m, lse_m, delta_m, acc, z_body, g_body, lse_body, delta_body, start_n, L, eta, scale,
              qk_scale, D: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, PRECISION: tl.constexpr,
              ROUND_BF16: tl.constexpr, MASKED: tl.constexpr):
    """dQ + dK + dV of tokens m from one block n of tokens."""
    offs_n = start_n + tl.arange(0, BLOCK_N)
    z_n = _load_rows(z_body, offs_n, L, D, BLOCK_D, MASKED)
    g_n = _load_rows(g_body, offs_n, L, D, BLOCK_D, MASKED)
    # lse = +inf beyond L makes those rows' probabilities exactly 0.
    lse_n = _load_row_stat(lse_body, offs_n, L, float("inf"), MASKED) * LOG2E
    delta_n = _load_row_stat(delta_body, offs_n, L, 0.0, MASKED)

    s = tl.dot(z_m, tl.trans(z_n), input_precision=PRECISION) * qk_scale  # S[m, n], log2 units
    p_mn = tl.exp2(s - lse_m[:, None])  # P[m, n]: rows m over keys n
    if MASKED:
        p_mn = tl.where((offs_n < L)[None, :], p_mn, 0.0)
    p_nm_t = tl.exp2(s - lse_n[None, :])  # P[n, m]^T: rows n over keys m, stored [m, n]
    dp_mn = -eta * tl.dot(g_m, tl.trans(z_n), input_precision=PRECISION)  # dO_i . z_j, i in m
    dp_nm_t = -eta * tl.dot(z_m, tl.trans(g_n), input_precision=PRECISION)  # dO_i . z_j, i in n
    ds = p_mn * (dp_mn - delta_m[:, None]) + p_nm_t * (dp_nm_t - delta_n[None, :])
    acc = tl.dot(_operand(scale * ds, z_n.dtype, ROUND_BF16), z_n, acc, input_precision=PRECISION)  # dQ + dK
    return tl.dot(_operand(-eta * p_nm_t, g_n.dtype, ROUND_BF16), g_n, acc, input_precision=PRECISION)  # dV


@triton.autotune(configs=tuning.configs(BWD_SPACE, INTERPRETER_CONFIG), key=["L", "D"],
                 prune_configs_by={"early_config_prune": tuning.pruner(_footprint(backward=True))})
@triton.jit
def _mdff_bwd_kernel(Z, G, LSE, DELTA, DZ, L, eta, scale,
                     D: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr, ROUND_BF16: tl.constexpr,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """One program per (body, block m of tokens): dz_m in one pass over all key blocks n."""
    qk_scale = scale * LOG2E
    body, offs_m = _program_tokens(L, BLOCK_M)
    z_body, g_body, lse_body, delta_body = Z + body * L * D, G + body * L * D, LSE + body * L, DELTA + body * L
    z_m = _load_rows(z_body, offs_m, L, D, BLOCK_D, True)
    g_m = _load_rows(g_body, offs_m, L, D, BLOCK_D, True)
    lse_m = _load_row_stat(lse_body, offs_m, L, float("inf"), True) * LOG2E
    delta_m = _load_row_stat(delta_body, offs_m, L, 0.0, True)

    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    full = (L // BLOCK_N) * BLOCK_N
    for start_n in range(0, full, BLOCK_N):
        acc = _bwd_step(z_m, g_m, lse_m, delta_m, acc, z_body, g_body, lse_body, delta_body, start_n, L, eta, scale,
                        qk_scale, D, BLOCK_D, BLOCK_N, PRECISION, ROUND_BF16, False)
    if full < L:
        acc = _bwd_step(z_m, g_m, lse_m, delta_m, acc, z_body, g_body, lse_body, delta_body, full, L, eta, scale,
                        qk_scale, D, BLOCK_D, BLOCK_N, PRECISION, ROUND_BF16, True)

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


def _forward(z, eta, scale, round_bf16=False):
    """(out, O, lse) of a contiguous z. round_bf16: tests only (see _operand)."""
    B, L, D = z.shape
    out, attn = torch.empty_like(z), torch.empty_like(z, dtype=torch.float32)
    lse = torch.empty((B, L), dtype=torch.float32, device=z.device)
    if z.numel() == 0:
        return out, attn, lse
    with device_guard(z):
        _mdff_fwd_kernel[lambda meta: (B * triton.cdiv(L, meta["BLOCK_M"]),)](
            z, out, attn, lse, L, eta, scale, D=D, BLOCK_D=dot_block(D), PRECISION=dot_precision(z.dtype),
            ROUND_BF16=round_bf16)
    return out, attn, lse


def _backward(grad, z, attn, lse, eta, scale, round_bf16=False):
    """dz for contiguous inputs, recomputing the score tiles."""
    B, L, D = z.shape
    dz = torch.empty_like(z)
    if z.numel() == 0:
        return dz
    delta = torch.empty((B, L), dtype=torch.float32, device=z.device)
    with device_guard(z):
        block_r = 32
        _mdff_bwd_delta_kernel[(triton.cdiv(B * L, block_r),)](
            grad, attn, delta, B * L, eta, D=D, BLOCK_D=dot_block(D), BLOCK_R=block_r)
        _mdff_bwd_kernel[lambda meta: (B * triton.cdiv(L, meta["BLOCK_M"]),)](
            z, grad, lse, delta, dz, L, eta, scale, D=D, BLOCK_D=dot_block(D), PRECISION=dot_precision(z.dtype),
            ROUND_BF16=round_bf16)
    return dz


@torch.library.custom_op("igm_fast::mdff_highpass_fwd", mutates_args=())
def mdff_highpass_fwd(z: torch.Tensor, eta: float,
                      scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns out (B, L, D) in z's dtype, the attention output O = softmax(scale * z z^T) z
    (B, L, D) fp32 and the row log-sum-exp of scale * z z^T, (B, L) fp32."""
    _check(z)
    return _forward(z.contiguous(), eta, scale)


@mdff_highpass_fwd.register_fake
def _(z, eta, scale):
    _check(z)
    return z.new_empty(z.shape), z.new_empty(z.shape, dtype=torch.float32), z.new_empty(z.shape[:2], dtype=torch.float32)


@torch.library.custom_op("igm_fast::mdff_highpass_bwd", mutates_args=())
def mdff_highpass_bwd(grad: torch.Tensor, z: torch.Tensor, attn: torch.Tensor, lse: torch.Tensor,
                      eta: float, scale: float) -> torch.Tensor:
    """dz of mdff_highpass_fwd's out for upstream gradient `grad`; attn is the forward's O."""
    _check(z, grad=grad, attn=attn)
    # A gradient can arrive expanded (stride 0, e.g. from .sum()): the kernels assume dense rows.
    return _backward(grad.contiguous(), z.contiguous(), attn.contiguous(), lse.contiguous(), eta, scale)


@mdff_highpass_bwd.register_fake
def _(grad, z, attn, lse, eta, scale):
    _check(z, grad=grad, attn=attn)
    return z.new_empty(z.shape)


def _setup_context(ctx, inputs, output):
    z, eta, scale = inputs
    _out, attn, lse = output
    ctx.save_for_backward(z, attn, lse)
    ctx.eta, ctx.scale = eta, scale
    ctx.mark_non_differentiable(attn, lse)


def _backward_rule(ctx, grad_out, _grad_attn, _grad_lse):
    z, attn, lse = ctx.saved_tensors
    return mdff_highpass_bwd(grad_out, z, attn, lse, ctx.eta, ctx.scale), None, None


mdff_highpass_fwd.register_autograd(_backward_rule, setup_context=_setup_context)


def mdff_highpass_triton(z, eta, scale):
    """(1+eta)*z - eta * softmax(scale * z z^T, dim=-1) z for z (B, L, D), fused; differentiable in z
    (eta and scale are numbers: the kernel gives them no gradient). Under torch.autocast the kernel
    runs in the autocast dtype and returns it."""
    _check(z)
    if isinstance(eta, torch.Tensor) or isinstance(scale, torch.Tensor):
        raise TypeError("mdff_highpass: eta and scale must be Python numbers for the Triton kernel, "
                        "which computes no gradient for them")
    dtype = autocast_dtype(z)
    return mdff_highpass_fwd(z.to(dtype).contiguous(), float(eta), float(scale))[0]


def aot_cases(B=256, L=750, D=256):
    """The autotuned kernels at the paper's shapes, fp32 and bf16 (igm_fast.kernels.aot)."""
    from igm_fast.kernels.aot import Case

    cases = []
    for dtype in (torch.float32, torch.bfloat16):
        z = torch.empty(0, device="meta", dtype=dtype)
        lse = torch.empty(0, device="meta", dtype=torch.float32)
        common = {"D": D, "BLOCK_D": dot_block(D), "PRECISION": dot_precision(dtype),
                  "ROUND_BF16": False}
        name = "fp32" if dtype == torch.float32 else "bf16"
        cases.append(Case(f"mdff fwd {name} D={D}", _mdff_fwd_kernel, FWD_SPACE, _footprint(backward=False),
                          dict(Z=z, OUT=z, ATTN=z, LSE=lse, L=L, eta=0.5, scale=D ** -0.5), common))
        cases.append(Case(f"mdff bwd {name} D={D}", _mdff_bwd_kernel, BWD_SPACE, _footprint(backward=True),
                          dict(Z=z, G=z, LSE=lse, DELTA=lse, DZ=z, L=L, eta=0.5, scale=D ** -0.5), common))
    return cases
