"""Fused similarity-distribution KL: IGM's distribution idempotency loss.

Row i: KL_i = KL(softmax(q_target_i . keys^T / tau) || softmax(q_pred_i . keys^T / tau)); the loss
is mean_i KL_i. The (B, K) logits never reach HBM:
- forward: a program owns a block of rows and a split of the keys, streams that split's key
  tiles once, and keeps online log-sum-exps of both rows plus the running sum of
  p * (logit_p - logit_q); a small kernel merges the splits' partial sums into lse_p, lse_q
  and KL_i, the only (O(B)) state saved for backward;
- backward recomputes the logits tile by tile in two kernels, one over (row block, key split)
  for dq_pred and dq_target, one over (key block, row split) for dkeys. Gradients nobody asked
  for are skipped: the model's keys are all_gather(g_x.detach()) and its q_target is detached,
  so there only dq_pred is computed. Each program
  reduces in registers and writes one fp32 partial; the few partials are summed once.
  No atomics, no (B, K) buffer.
Splitting the loop dimension matters: a single (B = K = 1024, D = 256) loss has only
B / BLOCK_B row blocks, far fewer than a GPU has SMs. Splits are whole multiples of
SPLIT_ALIGN so that a tile never crosses a split boundary.
Exponentials run in base 2 (logits pre-multiplied by log2(e) / tau); the saved lse's are in
those units and KL_i is in nats.
"""
import math

import torch
import triton
import triton.language as tl

from igm_fast.kernels import tuning
from igm_fast.kernels.checks import check_tensors, device_guard, dot_block, dot_precision, unit_last_stride

LN2 = tl.constexpr(math.log(2.0))  # base-2 units -> nats
TARGET_PROGRAMS = 512  # about four programs per SM on an H100 (132 SMs)
SPLIT_ALIGN = 64  # every BLOCK_B / BLOCK_K below divides it


# Best first (IGM_AUTOTUNE=quick takes the first that fits). The interpreter's small unequal tiles
# make the tests at B <= 64, K <= 96 cross several row and key tiles with ragged edges.
SPACE = [triton.Config({"BLOCK_B": bb, "BLOCK_K": bk}, num_warps=w, num_stages=s)
         for bb in (64, 32) for bk in (64, 32) for w, s in ((4, 2), (8, 3))]
INTERPRETER_CONFIG = triton.Config({"BLOCK_B": 16, "BLOCK_K": 32})


def _footprint(config, named_args, meta):
    """(registers per thread, shared bytes), estimated as for kernels/mdff.py: the two query tiles
    and two fp32 accumulators (backward) of BLOCK_B x D, about four fp32 score tiles; pipelined key
    tiles in shared memory. The same estimate serves the three kernels (the keys kernel swaps the
    roles of BLOCK_B and BLOCK_K, which the space keeps alike)."""
    bb, bk, bd = config.kwargs["BLOCK_B"], config.kwargs["BLOCK_K"], meta["BLOCK_D"]
    elem = named_args["qt_ptr"].element_size()
    regs = (max(bb, bk) * bd * (2 * elem + 8) + 4 * bb * bk * 4) / (4 * 32 * config.num_warps)
    return regs, (config.num_stages * max(bb, bk) + max(bb, bk)) * bd * elem


def _autotune(fn):
    return triton.autotune(configs=tuning.configs(SPACE, INTERPRETER_CONFIG), key=["D"],
                           prune_configs_by={"early_config_prune": tuning.pruner(_footprint)})(fn)


@triton.jit
def _load_rows(ptr, rows, dims, n_rows, D, stride):
    mask = (rows[:, None] < n_rows) & (dims[None, :] < D)
    return tl.load(ptr + rows[:, None] * stride + dims[None, :], mask=mask, other=0.0)


@triton.jit
def _rescale(m, m_other):
    """Common maximum of two partial sums of exp2(s - max), and the factors moving each onto it."""
    m_new = tl.maximum(m, m_other)
    return m_new, tl.exp2(m - m_new), tl.exp2(m_other - m_new)


@_autotune
@triton.jit
def _forward_kernel(qt_ptr, qp_ptr, k_ptr, part_ptr, B, K, D, stride_qt, stride_qp, stride_k, scale2,
                    keys_per_split, BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
                    PRECISION: tl.constexpr):
    """Partial sums of rows block pid(0) over key split pid(1), stored as part[stat, split, row]
    for stat = max_p, sum_p, gap, max_q, sum_q (gap = sum_j exp2(s_p - max_p) (s_p - s_q))."""
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    split = tl.program_id(1)
    dims = tl.arange(0, BLOCK_D)
    qt = _load_rows(qt_ptr, rows, dims, B, D, stride_qt)
    qp = _load_rows(qp_ptr, rows, dims, B, D, stride_qp)

    m_p = tl.full([BLOCK_B], float("-inf"), tl.float32)
    m_q = tl.full([BLOCK_B], float("-inf"), tl.float32)
    l_p = tl.zeros([BLOCK_B], tl.float32)
    l_q = tl.zeros([BLOCK_B], tl.float32)
    gap = tl.zeros([BLOCK_B], tl.float32)
    first = split * keys_per_split
    end = tl.minimum(first + keys_per_split, K)
    for start in range(first, end, BLOCK_K):
        cols = start + tl.arange(0, BLOCK_K)
        valid = (cols < end)[None, :]  # every tile holds >= 1 valid key: its maxima are finite
        keys = _load_rows(k_ptr, cols, dims, K, D, stride_k)
        s_p = tl.dot(qt, tl.trans(keys), input_precision=PRECISION) * scale2
        s_q = tl.dot(qp, tl.trans(keys), input_precision=PRECISION) * scale2

        m_p, alpha, _ = _rescale(m_p, tl.max(tl.where(valid, s_p, float("-inf")), 1))
        e_p = tl.where(valid, tl.exp2(s_p - m_p[:, None]), 0.0)
        l_p = l_p * alpha + tl.sum(e_p, 1)
        gap = gap * alpha + tl.sum(e_p * (s_p - s_q), 1)

        m_q, alpha, _ = _rescale(m_q, tl.max(tl.where(valid, s_q, float("-inf")), 1))
        l_q = l_q * alpha + tl.sum(tl.where(valid, tl.exp2(s_q - m_q[:, None]), 0.0), 1)

    splits = tl.num_programs(1)
    out = part_ptr + split * B + rows
    in_range = rows < B
    tl.store(out, m_p, mask=in_range)
    tl.store(out + splits * B, l_p, mask=in_range)
    tl.store(out + 2 * splits * B, gap, mask=in_range)
    tl.store(out + 3 * splits * B, m_q, mask=in_range)
    tl.store(out + 4 * splits * B, l_q, mask=in_range)


@triton.jit
def _merge_splits_kernel(part_ptr, kl_ptr, lse_p_ptr, lse_q_ptr, B, splits, BLOCK: tl.constexpr):
    """lse_p, lse_q and KL_i = E_p[s_p - s_q] - lse_p + lse_q from the splits' partial sums."""
    rows = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    in_range = rows < B
    m_p = tl.full([BLOCK], float("-inf"), tl.float32)
    m_q = tl.full([BLOCK], float("-inf"), tl.float32)
    l_p = tl.zeros([BLOCK], tl.float32)
    l_q = tl.zeros([BLOCK], tl.float32)
    gap = tl.zeros([BLOCK], tl.float32)
    for split in range(0, splits):
        part = part_ptr + split * B + rows
        m_p, a, b = _rescale(m_p, tl.load(part, mask=in_range, other=0.0))
        l_p = l_p * a + tl.load(part + splits * B, mask=in_range, other=1.0) * b
        gap = gap * a + tl.load(part + 2 * splits * B, mask=in_range, other=0.0) * b
        m_q, a, b = _rescale(m_q, tl.load(part + 3 * splits * B, mask=in_range, other=0.0))
        l_q = l_q * a + tl.load(part + 4 * splits * B, mask=in_range, other=1.0) * b
    lse_p = m_p + tl.log2(l_p)
    lse_q = m_q + tl.log2(l_q)
    tl.store(kl_ptr + rows, (gap / l_p - lse_p + lse_q) * LN2, mask=in_range)
    tl.store(lse_p_ptr + rows, lse_p, mask=in_range)
    tl.store(lse_q_ptr + rows, lse_q, mask=in_range)


@triton.jit
def _logit_grads(qt, qp, keys, lse_p, lse_q, kl, g, valid, scale2, PRECISION: tl.constexpr):
    """dL/dlogit for the target and predicted logits of one (rows x keys) tile, logit = q.k / tau.

    dL/dlogit_q = g (q - p); dL/dlogit_p = g p (log p - log q - KL_i); g = dL/dKL_i per row.
    """
    log2_p = tl.dot(qt, tl.trans(keys), input_precision=PRECISION) * scale2 - lse_p[:, None]
    log2_q = tl.dot(qp, tl.trans(keys), input_precision=PRECISION) * scale2 - lse_q[:, None]
    p = tl.where(valid, tl.exp2(log2_p), 0.0)
    q = tl.where(valid, tl.exp2(log2_q), 0.0)
    d_pred = (q - p) * g[:, None]
    d_target = p * ((log2_p - log2_q) * LN2 - kl[:, None]) * g[:, None]
    return d_target, d_pred


@triton.jit
def _load_row_stats(lse_p_ptr, lse_q_ptr, kl_ptr, g_ptr, rows, end):
    in_range = rows < end
    lse_p = tl.load(lse_p_ptr + rows, mask=in_range, other=0.0)
    lse_q = tl.load(lse_q_ptr + rows, mask=in_range, other=0.0)
    kl = tl.load(kl_ptr + rows, mask=in_range, other=0.0)
    g = tl.load(g_ptr + rows, mask=in_range, other=0.0).to(tl.float32)  # 0 beyond end: no contribution
    return lse_p, lse_q, kl, g


@_autotune
@triton.jit
def _backward_rows_kernel(qt_ptr, qp_ptr, k_ptr, lse_p_ptr, lse_q_ptr, kl_ptr, g_ptr, dqt_ptr, dqp_ptr,
                          B, K, D, stride_qt, stride_qp, stride_k, scale2, inv_tau, keys_per_split,
                          BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
                          PRECISION: tl.constexpr, NEED_DQT: tl.constexpr):
    """dq_pred, dq_target of row block pid(0) from key split pid(1), into [split, row, :]."""
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    split = tl.program_id(1)
    dims = tl.arange(0, BLOCK_D)
    qt = _load_rows(qt_ptr, rows, dims, B, D, stride_qt)
    qp = _load_rows(qp_ptr, rows, dims, B, D, stride_qp)
    lse_p, lse_q, kl, g = _load_row_stats(lse_p_ptr, lse_q_ptr, kl_ptr, g_ptr, rows, B)

    acc_qt = tl.zeros([BLOCK_B, BLOCK_D], tl.float32)
    acc_qp = tl.zeros([BLOCK_B, BLOCK_D], tl.float32)
    first = split * keys_per_split
    end = tl.minimum(first + keys_per_split, K)
    for start in range(first, end, BLOCK_K):
        cols = start + tl.arange(0, BLOCK_K)
        keys = _load_rows(k_ptr, cols, dims, K, D, stride_k)
        d_target, d_pred = _logit_grads(qt, qp, keys, lse_p, lse_q, kl, g, (cols < end)[None, :], scale2, PRECISION)
        acc_qp = tl.dot(d_pred.to(keys.dtype), keys, acc_qp, input_precision=PRECISION)
        if NEED_DQT:
            acc_qt = tl.dot(d_target.to(keys.dtype), keys, acc_qt, input_precision=PRECISION)

    out = (split * B + rows)[:, None] * D + dims[None, :]
    mask = (rows < B)[:, None] & (dims[None, :] < D)
    tl.store(dqp_ptr + out, acc_qp * inv_tau, mask=mask)
    if NEED_DQT:
        tl.store(dqt_ptr + out, acc_qt * inv_tau, mask=mask)


@_autotune
@triton.jit
def _backward_keys_kernel(qt_ptr, qp_ptr, k_ptr, lse_p_ptr, lse_q_ptr, kl_ptr, g_ptr, dk_ptr,
                          B, K, D, stride_qt, stride_qp, stride_k, scale2, inv_tau, rows_per_split,
                          BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
                          PRECISION: tl.constexpr):
    """dkeys of key block pid(0) from row split pid(1), into [split, key, :]."""
    cols = tl.program_id(0) * BLOCK_K + tl.arange(0, BLOCK_K)
    split = tl.program_id(1)
    dims = tl.arange(0, BLOCK_D)
    keys = _load_rows(k_ptr, cols, dims, K, D, stride_k)
    valid = (cols < K)[None, :]

    acc = tl.zeros([BLOCK_K, BLOCK_D], tl.float32)
    first = split * rows_per_split
    end = tl.minimum(first + rows_per_split, B)
    for start in range(first, end, BLOCK_B):
        rows = start + tl.arange(0, BLOCK_B)
        qt = _load_rows(qt_ptr, rows, dims, end, D, stride_qt)
        qp = _load_rows(qp_ptr, rows, dims, end, D, stride_qp)
        lse_p, lse_q, kl, g = _load_row_stats(lse_p_ptr, lse_q_ptr, kl_ptr, g_ptr, rows, end)
        d_target, d_pred = _logit_grads(qt, qp, keys, lse_p, lse_q, kl, g, valid, scale2, PRECISION)
        acc = tl.dot(tl.trans(d_pred).to(qp.dtype), qp, acc, input_precision=PRECISION)
        acc = tl.dot(tl.trans(d_target).to(qt.dtype), qt, acc, input_precision=PRECISION)

    mask = (cols[:, None] < K) & (dims[None, :] < D)
    tl.store(dk_ptr + (split * K + cols)[:, None] * D + dims[None, :], acc * inv_tau, mask=mask)


def _split(n_blocks, n_loop):
    """Split a loop over n_loop items into whole SPLIT_ALIGN chunks so that n_blocks programs per
    split reach about TARGET_PROGRAMS; returns (items per split, number of splits)."""
    wanted = max(1, min(triton.cdiv(TARGET_PROGRAMS, n_blocks), triton.cdiv(n_loop, SPLIT_ALIGN)))
    per_split = triton.cdiv(triton.cdiv(n_loop, wanted), SPLIT_ALIGN) * SPLIT_ALIGN
    return per_split, triton.cdiv(n_loop, per_split)


def _sum_splits(partials, dtype):
    """(splits, n, D) partial gradients -> (n, D): one pass, and none when there is one split."""
    return partials[0] if partials.shape[0] == 1 else partials.sum(0).to(dtype)


def _partials(splits, like):
    """Buffer for per-split partial gradients: fp32 to be summed, or the output itself for one split."""
    dtype = like.dtype if splits == 1 else torch.float32
    return torch.empty((splits, *like.shape), device=like.device, dtype=dtype)


@torch.library.custom_op("igm_fast::similarity_kl", mutates_args=())
def _similarity_kl_op(q_target: torch.Tensor, q_pred: torch.Tensor, keys: torch.Tensor,
                      tau: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns (KL_i in fp32 (B,), lse_p, lse_q in base-2 units (B,))."""
    qt, qp, k = (unit_last_stride(t) for t in (q_target, q_pred, keys))
    (B, D), K = qt.shape, k.shape[0]
    keys_per_split, splits = _split(triton.cdiv(B, SPLIT_ALIGN), K)
    part = torch.empty((5, splits, B), device=qt.device, dtype=torch.float32)
    kl, lse_p, lse_q = (torch.empty(B, device=qt.device, dtype=torch.float32) for _ in range(3))
    with device_guard(qt):
        _forward_kernel[lambda meta: (triton.cdiv(B, meta["BLOCK_B"]), splits)](
            qt, qp, k, part, B, K, D, qt.stride(0), qp.stride(0), k.stride(0), math.log2(math.e) / tau,
            keys_per_split, BLOCK_D=dot_block(D), PRECISION=dot_precision(qt.dtype))
        _merge_splits_kernel[(triton.cdiv(B, 128),)](part, kl, lse_p, lse_q, B, splits, BLOCK=128)
    return kl, lse_p, lse_q


@_similarity_kl_op.register_fake
def _(q_target, q_pred, keys, tau):
    B = q_target.shape[0]
    return tuple(q_target.new_empty(B, dtype=torch.float32) for _ in range(3))


@torch.library.custom_op("igm_fast::similarity_kl_backward", mutates_args=())
def _similarity_kl_backward_op(grad_kl: torch.Tensor, q_target: torch.Tensor, q_pred: torch.Tensor,
                               keys: torch.Tensor, kl: torch.Tensor, lse_p: torch.Tensor, lse_q: torch.Tensor,
                               tau: float, need_dq_target: bool,
                               need_dkeys: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns (dq_target, dq_pred, dkeys); dq_target and dkeys are zeros unless asked for."""
    g = grad_kl.contiguous()  # the grad of .mean() arrives expanded (stride 0)
    qt, qp, k = (unit_last_stride(t) for t in (q_target, q_pred, keys))
    (B, D), K = qt.shape, k.shape[0]
    common = (B, K, D, qt.stride(0), qp.stride(0), k.stride(0), math.log2(math.e) / tau, 1.0 / tau)

    keys_per_split, key_splits = _split(triton.cdiv(B, SPLIT_ALIGN), K)
    dqp = _partials(key_splits, q_pred)
    dqt = _partials(key_splits, q_target) if need_dq_target else dqp  # never written without NEED_DQT
    rows_per_split, row_splits = _split(triton.cdiv(K, SPLIT_ALIGN), B)
    dk = _partials(row_splits, keys) if need_dkeys else None
    with device_guard(qt):
        _backward_rows_kernel[lambda meta: (triton.cdiv(B, meta["BLOCK_B"]), key_splits)](
            qt, qp, k, lse_p, lse_q, kl, g, dqt, dqp, *common, keys_per_split,
            BLOCK_D=dot_block(D), PRECISION=dot_precision(qt.dtype), NEED_DQT=need_dq_target)
        if need_dkeys:
            _backward_keys_kernel[lambda meta: (triton.cdiv(K, meta["BLOCK_K"]), row_splits)](
                qt, qp, k, lse_p, lse_q, kl, g, dk, *common, rows_per_split, BLOCK_D=dot_block(D),
                PRECISION=dot_precision(qt.dtype))

    dq_target = _sum_splits(dqt, q_target.dtype) if need_dq_target else torch.zeros_like(qt)
    dkeys = _sum_splits(dk, keys.dtype) if need_dkeys else torch.zeros_like(k)
    return dq_target, _sum_splits(dqp, q_pred.dtype), dkeys


@_similarity_kl_backward_op.register_fake
def _(grad_kl, q_target, q_pred, keys, kl, lse_p, lse_q, tau, need_dq_target, need_dkeys):
    return (torch.empty_like(q_target, memory_format=torch.contiguous_format),
            torch.empty_like(q_pred, memory_format=torch.contiguous_format),
            torch.empty_like(keys, memory_format=torch.contiguous_format))


def _setup_context(ctx, inputs, output):
    q_target, q_pred, keys, tau = inputs
    kl, lse_p, lse_q = output
    ctx.save_for_backward(q_target, q_pred, keys, kl, lse_p, lse_q)
    ctx.tau = tau
    ctx.mark_non_differentiable(lse_p, lse_q)


def _backward(ctx, grad_kl, _grad_lse_p, _grad_lse_q):
    q_target, q_pred, keys, kl, lse_p, lse_q = ctx.saved_tensors
    need_dq_target, need_dkeys = ctx.needs_input_grad[0], ctx.needs_input_grad[2]
    dqt, dqp, dk = _similarity_kl_backward_op(grad_kl, q_target, q_pred, keys, kl, lse_p, lse_q,
                                              ctx.tau, need_dq_target, need_dkeys)
    return (dqt if need_dq_target else None), dqp, (dk if need_dkeys else None), None


_similarity_kl_op.register_autograd(_backward, setup_context=_setup_context)


def _validate(q_target, q_pred, keys, tau):
    if q_target.ndim != 2 or q_pred.shape != q_target.shape or keys.ndim != 2 or keys.shape[1] != q_target.shape[1]:
        raise ValueError(f"similarity_kl: expected q_target, q_pred (B, D) and keys (K, D); got "
                         f"{tuple(q_target.shape)}, {tuple(q_pred.shape)}, {tuple(keys.shape)}")
    if q_target.shape[0] == 0 or keys.shape[0] == 0 or keys.shape[1] == 0:
        raise ValueError(f"similarity_kl: B, K and D must be positive; got B={q_target.shape[0]}, "
                         f"K={keys.shape[0]}, D={keys.shape[1]}")
    check_tensors("similarity_kl", {"q_target": q_target, "q_pred": q_pred, "keys": keys})
    if not tau > 0:
        raise ValueError(f"similarity_kl: tau must be > 0, got {tau}")


def similarity_kl_triton(q_target, q_pred, keys, tau):
    """mean_i KL(softmax(q_target_i . keys^T / tau) || softmax(q_pred_i . keys^T / tau)) as a scalar
    of the inputs' (promoted) dtype; gradients reach all three inputs."""
    _validate(q_target, q_pred, keys, tau)
    dtype = torch.promote_types(torch.promote_types(q_target.dtype, q_pred.dtype), keys.dtype)
    kl, _, _ = _similarity_kl_op(q_target.to(dtype), q_pred.to(dtype), keys.to(dtype), float(tau))
    return kl.mean().to(dtype)


def aot_cases(B=128, K=1024, D=256):
    """The autotuned kernels at the model's shapes, fp32 and bf16 (igm_fast.kernels.aot)."""
    from igm_fast.kernels.aot import Case

    cases = []
    for dtype in (torch.float32, torch.bfloat16):
        q = torch.empty(0, device="meta", dtype=dtype)
        stat = torch.empty(0, device="meta", dtype=torch.float32)
        meta = {"BLOCK_D": dot_block(D), "PRECISION": dot_precision(dtype)}
        name = f"{'fp32' if dtype == torch.float32 else 'bf16'} D={D}"
        scalars = dict(B=B, K=K, D=D, stride_qt=D, stride_qp=D, stride_k=D, scale2=14.4)
        cases.append(Case(f"similarity_kl fwd {name}", _forward_kernel, SPACE, _footprint,
                          dict(qt_ptr=q, qp_ptr=q, k_ptr=q, part_ptr=stat, keys_per_split=64, **scalars), meta))
        rows = dict(qt_ptr=q, qp_ptr=q, k_ptr=q, lse_p_ptr=stat, lse_q_ptr=stat, kl_ptr=stat, g_ptr=stat)
        cases.append(Case(f"similarity_kl bwd rows {name}", _backward_rows_kernel, SPACE, _footprint,
                          dict(**rows, dqt_ptr=q, dqp_ptr=q, inv_tau=10.0, keys_per_split=64, **scalars),
                          {**meta, "NEED_DQT": False}))
        cases.append(Case(f"similarity_kl bwd keys {name}", _backward_keys_kernel, SPACE, _footprint,
                          dict(**rows, dk_ptr=q, inv_tau=10.0, rows_per_split=64, **scalars), meta))
    return cases
