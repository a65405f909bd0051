"""The one learning-rate schedule of pretraining and finetuning: per-iteration linear warmup, then
half-cosine decay to a floor (MAE / MAMP `adjust_learning_rate`, evaluated per iteration)."""
import math


def warmup_cosine(step, warmup_steps, total_steps, min_ratio=0.0):
    """Multiplier of the base lr at iteration `step`: step / warmup_steps during the warmup, then
    cosine from 1 down to min_ratio at total_steps (and min_ratio after it)."""
    if step < warmup_steps:
        return step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
