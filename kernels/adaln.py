"""Fused AdaLN-Zero pieces: modulated LayerNorm, gated residual, and the two in one.

adaln_modulate(x, shift, scale, eps) = LayerNorm(x, no affine) * (1 + scale) + shift
gated_residual(x, gate, y)           = x + gate * y
gated_residual_modulate(x, gate, y, shift, scale, eps)
    = (r, adaln_modulate(r, shift, scale, eps)) with r = gated_residual(x, gate, y)
x, y: (B, L, D); shift, scale, gate: per sample (B, 1, D) or per token (B, L, D).

gated_residual_modulate is one block's attention residual and the MLP's modulated LayerNorm:
custom ops are opaque to Inductor, so as two ops r would be written and read back between them;
fused, one read of x and y writes r and the output, and one backward pass gives every gradient.

Each program owns one sample and a chunk of its tokens, whole rows of D at a time, math in
fp32. Forward saves only the row mean and 1/std. Backward gives dx through the LayerNorm
backward of the modulated gradient and per-token parameter grads directly; per-sample
parameter grads are summed over the program's rows in fp32 registers and written once per
program as a partial, the partials (a few per sample) summed once afterwards: no atomics.
A gradient that is the incoming gradient itself (dshift per token, dx of the residual) is
returned as is, not copied.
"""
from typing import Optional

import torch
import triton
import triton.language as tl

from igm_fast.kernels.checks import check_tensors, device_guard, unit_last_stride

TARGET_PROGRAMS = 1024  # enough programs to fill an H100 (132 SMs) several times over
# The fused backward keeps six fp32 tiles live per row block: on the 4 warps of the other kernels
# it spills on sm_90 at D=256 (255 registers + 112 B of stack), on 8 it takes 119 registers.
FUSED_BACKWARD_WARPS = 8


@triton.jit
def _load_tile(ptr, b, tokens, dims, L, D, stride_b, stride_l):
    """The (tokens, D) tile of sample b in fp32, zeros outside the tensor."""
    mask = (tokens[:, None] < L) & (dims[None, :] < D)
    tile = tl.load(ptr + b * stride_b + tokens[:, None] * stride_l + dims[None, :], mask=mask, other=0.0)
    return tile.to(tl.float32)


@triton.jit
def _load_param(ptr, b, tokens, dims, L, D, stride_b, stride_l, PER_TOKEN: tl.constexpr):
    """A (tokens, D) tile of a per-token parameter, or the (1, D) row of a per-sample one, in fp32."""
    if PER_TOKEN:
        p = _load_tile(ptr, b, tokens, dims, L, D, stride_b, stride_l)
    else:
        p = tl.load(ptr + b * stride_b + dims, mask=dims < D, other=0.0).to(tl.float32)[None, :]
    return p


@triton.jit
def _modulate_rows(v, mask, shift, scale, D, eps):
    """LayerNorm(v) * (1 + scale) + shift of a (tokens, D) fp32 tile, its row mean and 1/std."""
    mean = tl.sum(v, 1) / D
    centred = tl.where(mask, v - mean[:, None], 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(centred * centred, 1) / D + eps)
    return centred * rstd[:, None] * (1.0 + scale) + shift, mean, rstd


@triton.jit
def _modulate_rows_backward(g, v, mean, rstd, scale, mask, D):
    """(dv, x_hat): the LayerNorm backward of the modulated gradient dL/dx_hat = g * (1 + scale)."""
    x_hat = tl.where(mask, (v - mean[:, None]) * rstd[:, None], 0.0)
    g_hat = g * (1.0 + scale)
    mean_g_hat = tl.sum(g_hat, 1) / D
    mean_g_hat_x_hat = tl.sum(g_hat * x_hat, 1) / D
    return rstd[:, None] * (g_hat - mean_g_hat[:, None] - x_hat * mean_g_hat_x_hat[:, None]), x_hat


@triton.jit
def _param_grad(ptr, offsets, value, mask, acc, PER_TOKEN: tl.constexpr):
    """A modulation parameter's gradient: stored per token, or summed over the tile's tokens into acc."""
    if PER_TOKEN:
        tl.store(ptr + offsets, value, mask=mask)
    else:
        acc += tl.sum(value, 0)
    return acc


@triton.jit
def _store_partial(ptr, part, acc, dims, D, PER_TOKEN: tl.constexpr):
    """A per-sample parameter's partial sum over this program's tokens (reduced over programs on the host)."""
    if not PER_TOKEN:
        tl.store(ptr + part, acc, mask=dims < D)


@triton.jit
def _modulate_forward_kernel(x_ptr, shift_ptr, scale_ptr, out_ptr, mean_ptr, rstd_ptr, L, D, eps,
                             x_sb, x_sl, shift_sb, shift_sl, scale_sb, scale_sl,
                             BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr,
                             SHIFT_PER_TOKEN: tl.constexpr, SCALE_PER_TOKEN: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)  # offsets past 2**31 elements at large B * L * D
    tokens = tl.program_id(1) * BLOCK_L + tl.arange(0, BLOCK_L)
    dims = tl.arange(0, BLOCK_D)
    mask = (tokens[:, None] < L) & (dims[None, :] < D)
    x = _load_tile(x_ptr, b, tokens, dims, L, D, x_sb, x_sl)
    shift = _load_param(shift_ptr, b, tokens, dims, L, D, shift_sb, shift_sl, SHIFT_PER_TOKEN)
    scale = _load_param(scale_ptr, b, tokens, dims, L, D, scale_sb, scale_sl, SCALE_PER_TOKEN)
    out, mean, rstd = _modulate_rows(x, mask, shift, scale, D, eps)
    rows = b * L + tokens
    tl.store(out_ptr + rows[:, None] * D + dims[None, :], out, mask=mask)
    tl.store(mean_ptr + rows, mean, mask=tokens < L)
    tl.store(rstd_ptr + rows, rstd, mask=tokens < L)


@triton.jit
def _modulate_backward_kernel(g_ptr, x_ptr, scale_ptr, mean_ptr, rstd_ptr, dx_ptr, dscale_ptr,
                              dshift_part_ptr, dscale_part_ptr, L, D, tokens_per_program,
                              g_sb, g_sl, x_sb, x_sl, scale_sb, scale_sl,
                              BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr,
                              SHIFT_PER_TOKEN: tl.constexpr, SCALE_PER_TOKEN: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    chunk = tl.program_id(1)
    dims = tl.arange(0, BLOCK_D)
    dshift_sum = tl.zeros([BLOCK_D], tl.float32)
    dscale_sum = tl.zeros([BLOCK_D], tl.float32)
    first = chunk * tokens_per_program
    for start in range(first, tl.minimum(first + tokens_per_program, L), BLOCK_L):
        tokens = start + tl.arange(0, BLOCK_L)
        mask = (tokens[:, None] < L) & (dims[None, :] < D)
        rows = b * L + tokens
        g = _load_tile(g_ptr, b, tokens, dims, L, D, g_sb, g_sl)
        x = _load_tile(x_ptr, b, tokens, dims, L, D, x_sb, x_sl)
        mean = tl.load(mean_ptr + rows, mask=tokens < L, other=0.0)
        rstd = tl.load(rstd_ptr + rows, mask=tokens < L, other=0.0)
        scale = _load_param(scale_ptr, b, tokens, dims, L, D, scale_sb, scale_sl, SCALE_PER_TOKEN)
        dx, x_hat = _modulate_rows_backward(g, x, mean, rstd, scale, mask, D)
        offsets = rows[:, None] * D + dims[None, :]
        tl.store(dx_ptr + offsets, dx, mask=mask)
        dscale_sum = _param_grad(dscale_ptr, offsets, g * x_hat, mask, dscale_sum, SCALE_PER_TOKEN)
        if not SHIFT_PER_TOKEN:  # a per-token shift's gradient is grad_out itself
            dshift_sum += tl.sum(g, 0)
    part = (b * tl.num_programs(1) + chunk) * D + dims
    _store_partial(dscale_part_ptr, part, dscale_sum, dims, D, SCALE_PER_TOKEN)
    _store_partial(dshift_part_ptr, part, dshift_sum, dims, D, SHIFT_PER_TOKEN)


@triton.jit
def _gated_residual_tile(x_ptr, gate_ptr, y_ptr, b, tokens, dims, L, D, x_sb, x_sl, gate_sb, gate_sl, y_sb, y_sl,
                         GATE_PER_TOKEN: tl.constexpr):
    """x + gate * y for one tile of tokens (fp32)."""
    x = _load_tile(x_ptr, b, tokens, dims, L, D, x_sb, x_sl)
    y = _load_tile(y_ptr, b, tokens, dims, L, D, y_sb, y_sl)
    return x + _load_param(gate_ptr, b, tokens, dims, L, D, gate_sb, gate_sl, GATE_PER_TOKEN) * y


@triton.jit
def _gated_residual_forward_kernel(x_ptr, gate_ptr, y_ptr, out_ptr, L, D,
                                   x_sb, x_sl, gate_sb, gate_sl, y_sb, y_sl,
                                   BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr, GATE_PER_TOKEN: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    tokens = tl.program_id(1) * BLOCK_L + tl.arange(0, BLOCK_L)
    dims = tl.arange(0, BLOCK_D)
    mask = (tokens[:, None] < L) & (dims[None, :] < D)
    r = _gated_residual_tile(x_ptr, gate_ptr, y_ptr, b, tokens, dims, L, D, x_sb, x_sl, gate_sb, gate_sl,
                             y_sb, y_sl, GATE_PER_TOKEN)
    rows = b * L + tokens
    tl.store(out_ptr + rows[:, None] * D + dims[None, :], r, mask=mask)


@triton.jit
def _gated_residual_backward_kernel(g_ptr, gate_ptr, y_ptr, dy_ptr, dgate_ptr, dgate_part_ptr, L, D,
                                    tokens_per_program, g_sb, g_sl, gate_sb, gate_sl, y_sb, y_sl,
                                    BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr, GATE_PER_TOKEN: tl.constexpr):
    """dy = g * gate and dgate = g * y from one read of g, gate and y."""
    b = tl.program_id(0).to(tl.int64)
    chunk = tl.program_id(1)
    dims = tl.arange(0, BLOCK_D)
    dgate_sum = tl.zeros([BLOCK_D], tl.float32)
    first = chunk * tokens_per_program
    for start in range(first, tl.minimum(first + tokens_per_program, L), BLOCK_L):
        tokens = start + tl.arange(0, BLOCK_L)
        mask = (tokens[:, None] < L) & (dims[None, :] < D)
        rows = b * L + tokens
        g = _load_tile(g_ptr, b, tokens, dims, L, D, g_sb, g_sl)
        y = _load_tile(y_ptr, b, tokens, dims, L, D, y_sb, y_sl)
        gate = _load_param(gate_ptr, b, tokens, dims, L, D, gate_sb, gate_sl, GATE_PER_TOKEN)
        tl.store(dy_ptr + rows[:, None] * D + dims[None, :], g * gate, mask=mask)
        if GATE_PER_TOKEN:
            tl.store(dgate_ptr + rows[:, None] * D + dims[None, :], g * y, mask=mask)
        else:
            dgate_sum += tl.sum(g * y, 0)
    if not GATE_PER_TOKEN:
        tl.store(dgate_part_ptr + (b * tl.num_programs(1) + chunk) * D + dims, dgate_sum, mask=dims < D)


@triton.jit
def _gated_residual_modulate_forward_kernel(x_ptr, gate_ptr, y_ptr, shift_ptr, scale_ptr, res_ptr, out_ptr,
                                            mean_ptr, rstd_ptr, L, D, eps, x_sb, x_sl, gate_sb, gate_sl,
                                            y_sb, y_sl, shift_sb, shift_sl, scale_sb, scale_sl,
                                            BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr, GATE_PER_TOKEN: tl.constexpr,
                                            SHIFT_PER_TOKEN: tl.constexpr, SCALE_PER_TOKEN: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    tokens = tl.program_id(1) * BLOCK_L + tl.arange(0, BLOCK_L)
    dims = tl.arange(0, BLOCK_D)
    mask = (tokens[:, None] < L) & (dims[None, :] < D)
    r = _gated_residual_tile(x_ptr, gate_ptr, y_ptr, b, tokens, dims, L, D, x_sb, x_sl, gate_sb, gate_sl,
                             y_sb, y_sl, GATE_PER_TOKEN)
    rows = b * L + tokens
    # normalise r as stored: the output is adaln_modulate of the returned r (also in bf16), and the
    # backward's x_hat, recomputed from the stored r, is the forward's
    r = r.to(res_ptr.dtype.element_ty)
    tl.store(res_ptr + rows[:, None] * D + dims[None, :], r, mask=mask)
    shift = _load_param(shift_ptr, b, tokens, dims, L, D, shift_sb, shift_sl, SHIFT_PER_TOKEN)
    scale = _load_param(scale_ptr, b, tokens, dims, L, D, scale_sb, scale_sl, SCALE_PER_TOKEN)
    out, mean, rstd = _modulate_rows(r.to(tl.float32), mask, shift, scale, D, eps)
    tl.store(out_ptr + rows[:, None] * D + dims[None, :], out, mask=mask)
    tl.store(mean_ptr + rows, mean, mask=tokens < L)
    tl.store(rstd_ptr + rows, rstd, mask=tokens < L)


@triton.jit
def _gated_residual_modulate_backward_kernel(g_ptr, g_res_ptr, res_ptr, gate_ptr, y_ptr, scale_ptr, mean_ptr, rstd_ptr,
                                             dres_ptr, dy_ptr, dgate_ptr, dscale_ptr, dgate_part_ptr, dshift_part_ptr,
                                             dscale_part_ptr, L, D, tokens_per_program, g_sb, g_sl, g_res_sb, g_res_sl,
                                             res_sb, res_sl, gate_sb, gate_sl, y_sb, y_sl, scale_sb, scale_sl,
                                             BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr,
                                             HAS_GRAD_RESIDUAL: tl.constexpr, GATE_PER_TOKEN: tl.constexpr,
                                             SHIFT_PER_TOKEN: tl.constexpr, SCALE_PER_TOKEN: tl.constexpr):
    """dr = grad_residual + LayerNorm backward of grad_out * (1 + scale), then dy = dr * gate and
    dgate = dr * y from the same tile: r's gradient is written once, as dx, and never read back."""
    b = tl.program_id(0).to(tl.int64)
    chunk = tl.program_id(1)
    dims = tl.arange(0, BLOCK_D)
    dgate_sum = tl.zeros([BLOCK_D], tl.float32)
    dshift_sum = tl.zeros([BLOCK_D], tl.float32)
    dscale_sum = tl.zeros([BLOCK_D], tl.float32)
    first = chunk * tokens_per_program
    for start in range(first, tl.minimum(first + tokens_per_program, L), BLOCK_L):
        tokens = start + tl.arange(0, BLOCK_L)
        mask = (tokens[:, None] < L) & (dims[None, :] < D)
        rows = b * L + tokens
        offsets = rows[:, None] * D + dims[None, :]
        g = _load_tile(g_ptr, b, tokens, dims, L, D, g_sb, g_sl)
        r = _load_tile(res_ptr, b, tokens, dims, L, D, res_sb, res_sl)
        mean = tl.load(mean_ptr + rows, mask=tokens < L, other=0.0)
        rstd = tl.load(rstd_ptr + rows, mask=tokens < L, other=0.0)
        scale = _load_param(scale_ptr, b, tokens, dims, L, D, scale_sb, scale_sl, SCALE_PER_TOKEN)
        dr, x_hat = _modulate_rows_backward(g, r, mean, rstd, scale, mask, D)
        if HAS_GRAD_RESIDUAL:
            dr += _load_tile(g_res_ptr, b, tokens, dims, L, D, g_res_sb, g_res_sl)
        tl.store(dres_ptr + offsets, dr, mask=mask)
        y = _load_tile(y_ptr, b, tokens, dims, L, D, y_sb, y_sl)
        gate = _load_param(gate_ptr, b, tokens, dims, L, D, gate_sb, gate_sl, GATE_PER_TOKEN)
        tl.store(dy_ptr + offsets, dr * gate, mask=mask)
        dgate_sum = _param_grad(dgate_ptr, offsets, dr * y, mask, dgate_sum, GATE_PER_TOKEN)
        dscale_sum = _param_grad(dscale_ptr, offsets, g * x_hat, mask, dscale_sum, SCALE_PER_TOKEN)
        if not SHIFT_PER_TOKEN:
            dshift_sum += tl.sum(g, 0)
    part = (b * tl.num_programs(1) + chunk) * D + dims
    _store_partial(dgate_part_ptr, part, dgate_sum, dims, D, GATE_PER_TOKEN)
    _store_partial(dscale_part_ptr, part, dscale_sum, dims, D, SCALE_PER_TOKEN)
    _store_partial(dshift_part_ptr, part, dshift_sum, dims, D, SHIFT_PER_TOKEN)


def _rows(t):
    """t with unit stride along D, and its (sample, token) strides; token stride 0 for (B, 1, D).
    A chunk of a fused (B, L, 6D) modulation output is read in place."""
    t = unit_last_stride(t)
    return t, (t.stride(0), t.stride(1) if t.shape[1] > 1 else 0)


def _tiling(L, D):
    """Rows per tile (whole rows of D, about 4K elements) and warps per program."""
    block_d = triton.next_power_of_2(D)
    block_l = min(triton.next_power_of_2(L), max(1, 4096 // block_d))
    return block_l, block_d, (4 if block_l * block_d <= 4096 else 8)


def _tokens_per_program(B, L, block_l):
    """Tokens per backward program, whole tiles: B * chunks programs fill the GPU while each
    sample gets only a few per-sample partials."""
    tiles = triton.cdiv(L, block_l)
    chunks = min(tiles, max(1, triton.cdiv(TARGET_PROGRAMS, B)))
    return triton.cdiv(tiles, chunks) * block_l


def _sum_partials(partials, dtype):
    """(B, chunks, D) fp32 partials -> (B, 1, D) in the parameter's dtype."""
    return partials.sum(1, keepdim=True).to(dtype)


def _promoted(*tensors):
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def _dense(shape, like, dtype=None):
    return torch.empty(shape, device=like.device, dtype=dtype or like.dtype)


@torch.library.custom_op("igm_fast::adaln_modulate", mutates_args=())
def _adaln_modulate_op(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor,
                       eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns (out, row mean, row 1/std), statistics in fp32 (B, L)."""
    (x, xs), (shift, shs), (scale, scs) = _rows(x), _rows(shift), _rows(scale)
    B, L, D = x.shape
    out = _dense(x.shape, x, _promoted(x, shift, scale))
    mean, rstd = _dense((B, L), x, torch.float32), _dense((B, L), x, torch.float32)
    block_l, block_d, warps = _tiling(L, D)
    with device_guard(x):
        _modulate_forward_kernel[(B, triton.cdiv(L, block_l))](
            x, shift, scale, out, mean, rstd, L, D, eps, *xs, *shs, *scs,
            BLOCK_L=block_l, BLOCK_D=block_d, SHIFT_PER_TOKEN=shift.shape[1] > 1,
            SCALE_PER_TOKEN=scale.shape[1] > 1, num_warps=warps)
    return out, mean, rstd


@_adaln_modulate_op.register_fake
def _(x, shift, scale, eps):
    B, L, _ = x.shape
    return _dense(x.shape, x, _promoted(x, shift, scale)), _dense((B, L), x, torch.float32), \
        _dense((B, L), x, torch.float32)


@torch.library.custom_op("igm_fast::adaln_modulate_backward", mutates_args=())
def _adaln_modulate_backward_op(grad: torch.Tensor, x: torch.Tensor, scale: torch.Tensor, mean: torch.Tensor,
                                rstd: torch.Tensor, shift_per_token: bool,
                                shift_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns (dx, dscale, dshift); dshift (B, 1, D) is reduced here only for a per-sample shift:
    for a per-token shift it is `grad` itself, and this returns an empty tensor in its place."""
    (grad, gs), (x, xs), (scale, scs) = _rows(grad), _rows(x), _rows(scale)
    B, L, D = x.shape
    block_l, block_d, warps = _tiling(L, D)
    tokens_per_program = _tokens_per_program(B, L, block_l)
    chunks = triton.cdiv(L, tokens_per_program)
    scale_per_token = scale.shape[1] > 1
    dx = _dense(x.shape, x)
    dscale = _dense(x.shape, scale) if scale_per_token else _dense((B, chunks, D), x, torch.float32)
    dshift_part = _dense((0,), x, torch.float32) if shift_per_token else _dense((B, chunks, D), x, torch.float32)
    with device_guard(x):
        _modulate_backward_kernel[(B, chunks)](
            grad, x, scale, mean, rstd, dx, dscale, dshift_part, dscale, L, D, tokens_per_program, *gs, *xs, *scs,
            BLOCK_L=block_l, BLOCK_D=block_d, SHIFT_PER_TOKEN=shift_per_token, SCALE_PER_TOKEN=scale_per_token,
            num_warps=warps)
    if not scale_per_token:
        dscale = _sum_partials(dscale, scale.dtype)
    dshift = _dense((0,), x, shift_dtype) if shift_per_token else _sum_partials(dshift_part, shift_dtype)
    return dx, dscale, dshift


@_adaln_modulate_backward_op.register_fake
def _(grad, x, scale, mean, rstd, shift_per_token, shift_dtype):
    dshift = _dense((0,) if shift_per_token else (x.shape[0], 1, x.shape[2]), x, shift_dtype)
    return _dense(x.shape, x), _dense(scale.shape, scale), dshift


def _adaln_setup_context(ctx, inputs, output):
    x, shift, scale, _eps = inputs
    _out, mean, rstd = output
    ctx.save_for_backward(x, scale, mean, rstd)
    ctx.shift_per_token, ctx.shift_dtype = shift.shape[1] > 1, shift.dtype
    ctx.mark_non_differentiable(mean, rstd)


def _adaln_backward(ctx, grad, _grad_mean, _grad_rstd):
    x, scale, mean, rstd = ctx.saved_tensors
    dx, dscale, dshift = _adaln_modulate_backward_op(grad, x, scale, mean, rstd, ctx.shift_per_token,
                                                     ctx.shift_dtype)
    if ctx.shift_per_token:
        dshift = grad.to(ctx.shift_dtype)
    return dx, dshift, dscale, None


_adaln_modulate_op.register_autograd(_adaln_backward, setup_context=_adaln_setup_context)


@torch.library.custom_op("igm_fast::gated_residual", mutates_args=())
def _gated_residual_op(x: torch.Tensor, gate: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    (x, xs), (gate, gts), (y, ys) = _rows(x), _rows(gate), _rows(y)
    B, L, D = x.shape
    out = _dense(x.shape, x, _promoted(x, gate, y))
    block_l, block_d, warps = _tiling(L, D)
    with device_guard(x):
        _gated_residual_forward_kernel[(B, triton.cdiv(L, block_l))](
            x, gate, y, out, L, D, *xs, *gts, *ys, BLOCK_L=block_l, BLOCK_D=block_d,
            GATE_PER_TOKEN=gate.shape[1] > 1, num_warps=warps)
    return out


@_gated_residual_op.register_fake
def _(x, gate, y):
    return _dense(x.shape, x, _promoted(x, gate, y))


@torch.library.custom_op("igm_fast::gated_residual_backward", mutates_args=())
def _gated_residual_backward_op(grad: torch.Tensor, gate: torch.Tensor,
                                y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (dgate, dy)."""
    (grad, gs), (gate, gts), (y, ys) = _rows(grad), _rows(gate), _rows(y)
    B, L, D = y.shape
    block_l, block_d, warps = _tiling(L, D)
    tokens_per_program = _tokens_per_program(B, L, block_l)
    chunks = triton.cdiv(L, tokens_per_program)
    gate_per_token = gate.shape[1] > 1
    dy = _dense(y.shape, y)
    dgate = _dense(y.shape, gate) if gate_per_token else _dense((B, chunks, D), y, torch.float32)
    with device_guard(y):
        _gated_residual_backward_kernel[(B, chunks)](
            grad, gate, y, dy, dgate, dgate, L, D, tokens_per_program, *gs, *gts, *ys,
            BLOCK_L=block_l, BLOCK_D=block_d, GATE_PER_TOKEN=gate_per_token, num_warps=warps)
    return (dgate if gate_per_token else _sum_partials(dgate, gate.dtype)), dy


@_gated_residual_backward_op.register_fake
def _(grad, gate, y):
    return _dense(gate.shape, gate), _dense(y.shape, y)


def _gated_residual_setup_context(ctx, inputs, output):
    x, gate, y = inputs
    ctx.save_for_backward(gate, y)
    ctx.x_dtype = x.dtype


def _gated_residual_backward(ctx, grad):
    gate, y = ctx.saved_tensors
    dgate, dy = _gated_residual_backward_op(grad, gate, y)
    return grad.to(ctx.x_dtype), dgate, dy


_gated_residual_op.register_autograd(_gated_residual_backward, setup_context=_gated_residual_setup_context)


@torch.library.custom_op("igm_fast::gated_residual_modulate", mutates_args=())
def _gated_residual_modulate_op(x: torch.Tensor, gate: torch.Tensor, y: torch.Tensor, shift: torch.Tensor,
                                scale: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                          torch.Tensor]:
    """Returns (residual, out, row mean, row 1/std), statistics of the residual in fp32 (B, L)."""
    (x, xs), (gate, gts), (y, ys), (shift, shs), (scale, scs) = map(_rows, (x, gate, y, shift, scale))
    B, L, D = x.shape
    residual = _dense(x.shape, x, _promoted(x, gate, y))
    out = _dense(x.shape, x, _promoted(residual, shift, scale))
    mean, rstd = _dense((B, L), x, torch.float32), _dense((B, L), x, torch.float32)
    block_l, block_d, warps = _tiling(L, D)
    with device_guard(x):
        _gated_residual_modulate_forward_kernel[(B, triton.cdiv(L, block_l))](
            x, gate, y, shift, scale, residual, out, mean, rstd, L, D, eps, *xs, *gts, *ys, *shs, *scs,
            BLOCK_L=block_l, BLOCK_D=block_d, GATE_PER_TOKEN=gate.shape[1] > 1,
            SHIFT_PER_TOKEN=shift.shape[1] > 1, SCALE_PER_TOKEN=scale.shape[1] > 1, num_warps=warps)
    return residual, out, mean, rstd


@_gated_residual_modulate_op.register_fake
def _(x, gate, y, shift, scale, eps):
    B, L, _ = x.shape
    residual = _dense(x.shape, x, _promoted(x, gate, y))
    return (residual, _dense(x.shape, x, _promoted(residual, shift, scale)),
            _dense((B, L), x, torch.float32), _dense((B, L), x, torch.float32))


@torch.library.custom_op("igm_fast::gated_residual_modulate_backward", mutates_args=())
def _gated_residual_modulate_backward_op(
        grad_out: torch.Tensor, grad_residual: Optional[torch.Tensor], residual: torch.Tensor, gate: torch.Tensor,
        y: torch.Tensor, scale: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor, shift_per_token: bool,
        shift_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns (dresidual, dgate, dy, dscale, dshift); grad_residual None when the residual got no
    gradient. dshift as in adaln_modulate_backward: empty for a per-token shift (it is grad_out)."""
    (grad_out, gs), (residual, rs), (gate, gts), (y, ys), (scale, scs) = map(
        _rows, (grad_out, residual, gate, y, scale))
    has_grad_residual = grad_residual is not None
    grad_residual, grs = _rows(grad_residual) if has_grad_residual else (grad_out, gs)  # never read then
    B, L, D = residual.shape
    block_l, block_d, _ = _tiling(L, D)
    tokens_per_program = _tokens_per_program(B, L, block_l)
    chunks = triton.cdiv(L, tokens_per_program)
    gate_per_token, scale_per_token = gate.shape[1] > 1, scale.shape[1] > 1
    dresidual, dy = _dense(residual.shape, residual), _dense(y.shape, y)
    dgate = _dense(y.shape, gate) if gate_per_token else _dense((B, chunks, D), y, torch.float32)
    dscale = _dense(y.shape, scale) if scale_per_token else _dense((B, chunks, D), y, torch.float32)
    dshift_part = _dense((0,), y, torch.float32) if shift_per_token else _dense((B, chunks, D), y, torch.float32)
    with device_guard(y):
        _gated_residual_modulate_backward_kernel[(B, chunks)](
            grad_out, grad_residual, residual, gate, y, scale, mean, rstd, dresidual, dy, dgate, dscale,
            dgate, dshift_part, dscale, L, D, tokens_per_program, *gs, *grs, *rs, *gts, *ys, *scs,
            BLOCK_L=block_l, BLOCK_D=block_d, HAS_GRAD_RESIDUAL=has_grad_residual,
            GATE_PER_TOKEN=gate_per_token, SHIFT_PER_TOKEN=shift_per_token, SCALE_PER_TOKEN=scale_per_token,
            num_warps=FUSED_BACKWARD_WARPS)
    if not gate_per_token:
        dgate = _sum_partials(dgate, gate.dtype)
    if not scale_per_token:
        dscale = _sum_partials(dscale, scale.dtype)
    dshift = _dense((0,), y, shift_dtype) if shift_per_token else _sum_partials(dshift_part, shift_dtype)
    return dresidual, dgate, dy, dscale, dshift


@_gated_residual_modulate_backward_op.register_fake
def _(grad_out, grad_residual, residual, gate, y, scale, mean, rstd, shift_per_token, shift_dtype):
    dshift = _dense((0,) if shift_per_token else (y.shape[0], 1, y.shape[2]), y, shift_dtype)
    return _dense(residual.shape, residual), _dense(gate.shape, gate), _dense(y.shape, y), \
        _dense(scale.shape, scale), dshift


def _gated_residual_modulate_setup_context(ctx, inputs, output):
    x, gate, y, shift, scale, _eps = inputs
    residual, _out, mean, rstd = output
    ctx.save_for_backward(residual, gate, y, scale, mean, rstd)
    ctx.x_dtype, ctx.shift_per_token, ctx.shift_dtype = x.dtype, shift.shape[1] > 1, shift.dtype
    ctx.mark_non_differentiable(mean, rstd)
    ctx.set_materialize_grads(False)  # an output used nowhere sends None, not a tensor of zeros to read


def _gated_residual_modulate_backward(ctx, grad_residual, grad_out, _grad_mean, _grad_rstd):
    residual, gate, y, scale, mean, rstd = ctx.saved_tensors
    if grad_out is None:  # only the residual was used: the gated residual's backward
        dgate, dy = _gated_residual_backward_op(grad_residual, gate, y)
        return grad_residual.to(ctx.x_dtype), dgate, dy, None, None, None
    dresidual, dgate, dy, dscale, dshift = _gated_residual_modulate_backward_op(
        grad_out, grad_residual, residual, gate, y, scale, mean, rstd, ctx.shift_per_token, ctx.shift_dtype)
    if ctx.shift_per_token:
        dshift = grad_out.to(ctx.shift_dtype)
    return dresidual.to(ctx.x_dtype), dgate, dy, dshift, dscale, None


_gated_residual_modulate_op.register_autograd(_gated_residual_modulate_backward,
                                              setup_context=_gated_residual_modulate_setup_context)


def _validate(name, x, **params):
    tensors = {"x": x, **params}
    shapes = {k: tuple(t.shape) for k, t in tensors.items()}
    if x.ndim != 3 or 0 in x.shape:
        raise ValueError(f"{name}: x must be a non-empty (B, L, D) tensor; got {shapes}")
    B, L, D = x.shape
    for key, t in params.items():
        allowed = ((B, L, D),) if key == "y" else ((B, 1, D), (B, L, D))
        if tuple(t.shape) not in allowed:
            raise ValueError(f"{name}: {key} must be {' or '.join(map(str, allowed))}; got {shapes}")
    check_tensors(name, tensors)


def adaln_modulate_triton(x, shift, scale, eps=1e-6):
    """LayerNorm(x, no affine) * (1 + scale) + shift; output in the promoted dtype of the inputs."""
    _validate("adaln_modulate", x, shift=shift, scale=scale)
    return _adaln_modulate_op(x, shift, scale, float(eps))[0]


def gated_residual_triton(x, gate, y):
    """x + gate * y; output in the promoted dtype of the inputs."""
    _validate("gated_residual", x, gate=gate, y=y)
    return _gated_residual_op(x, gate, y)


def gated_residual_modulate_triton(x, gate, y, shift, scale, eps=1e-6):
    """(r, LayerNorm(r, no affine) * (1 + scale) + shift) with r = x + gate * y, in one kernel;
    each output in the promoted dtype of its inputs."""
    _validate("gated_residual_modulate", x, gate=gate, y=y, shift=shift, scale=scale)
    return _gated_residual_modulate_op(x, gate, y, shift, scale, float(eps))[:2]


def aot_cases(B=256, L=750, D=256):
    """The fused kernels at the paper's shapes as the wrapper launches them (its tiling, Triton's
    default 3 stages), fp32 and bf16, parameters per sample and per token (igm_fast.kernels.aot)."""
    from igm_fast.kernels.aot import Case

    block_l, block_d, warps = _tiling(L, D)
    fwd_config = triton.Config({"BLOCK_L": block_l}, num_warps=warps, num_stages=3)
    bwd_config = triton.Config({"BLOCK_L": block_l}, num_warps=FUSED_BACKWARD_WARPS, num_stages=3)
    tokens_per_program = _tokens_per_program(B, L, block_l)
    f32 = torch.empty(0, device="meta", dtype=torch.float32)
    cases = []
    for dtype in (torch.float32, torch.bfloat16):
        t = torch.empty(0, device="meta", dtype=dtype)
        for per_token in (False, True):
            xs, ps = (L * D, D), (L * D, D if per_token else 0)  # (sample, token) strides
            part = t if per_token else f32  # dgate and dscale: per-token grads or fp32 partials
            # positional, as launched
            fwd_args = (t, t, t, t, t, t, t, f32, f32, L, D, 1e-6, *xs, *ps, *xs, *ps, *ps)
            bwd_args = (t, t, t, t, t, t, f32, f32, t, t, part, part, part, f32, part, L, D, tokens_per_program,
                        *xs, *xs, *xs, *ps, *xs, *ps)
            constexprs = dict(BLOCK_D=block_d, GATE_PER_TOKEN=per_token, SHIFT_PER_TOKEN=per_token,
                              SCALE_PER_TOKEN=per_token)
            name = f"{'fp32' if dtype == torch.float32 else 'bf16'} {'per-token' if per_token else 'per-sample'} D={D}"
            fwd, bwd = _gated_residual_modulate_forward_kernel, _gated_residual_modulate_backward_kernel
            cases.append(Case(f"gated_residual_modulate fwd {name}", fwd, [fwd_config], _one_config,
                              dict(zip(fwd.arg_names, fwd_args)), constexprs))
            cases.append(Case(f"gated_residual_modulate bwd {name}", bwd, [bwd_config], _one_config,
                              dict(zip(bwd.arg_names, bwd_args)), {**constexprs, "HAS_GRAD_RESIDUAL": True}))
    return cases


def _one_config(config, named_args, meta):
    """Footprint for aot.Case: a single config, the wrapper's, has nothing to be pruned against."""
    return 0, 0
