"""Under-training and over-fitting flags read off a fine-tuning run's loss curves (pure; the engine
records them in the prepare record and the report recomputes them from the same curves).

- few_steps: fewer than MIN_STEPS optimizer steps. The loop warms the rate up over min(10, steps/10)
  steps and decays it on a cosine, so a run this short has spent most of its steps at a rate far from
  its peak; a flat loss there says little about the method.
- still_falling: the mean training loss of the last quarter of the steps is below that of the quarter
  before by more than FALL_FRACTION of it, and by more than twice the standard error of that
  difference (per-batch losses are noisy). More epochs or data would likely still help.
- held_out_falling: held-out loss (measured after each epoch) still fell over the last epoch by more
  than FALL_FRACTION: the same reading from data the model did not train on.
- overfitting: held-out loss at the end is above its best earlier value by more than RISE_FRACTION
  while the training loss kept falling: fewer epochs, or more data, would do better.

With one epoch there is one held-out value: over-fitting is not assessed, and the flags say so.
"""
from __future__ import annotations

import math
from typing import Sequence

MIN_STEPS = 30          # "a few dozen": below it the warm-up and decay dominate the run (see above)
FALL_FRACTION = 0.05    # a 5% drop between the last two quarters: the curve has not flattened
RISE_FRACTION = 0.02    # held-out loss 2% above its best: beyond epoch-to-epoch jitter of a ~25-example slice
MIN_CURVE = 8           # quarters of fewer than 2 steps carry no trend


def _mean_se(xs: Sequence[float]) -> tuple[float, float]:
    m = sum(xs) / len(xs)
    var = sum((x - m) ** 2 for x in xs) / max(len(xs) - 1, 1)
    return m, math.sqrt(var / len(xs))


def training_flags(loss_curve: Sequence[float], eval_loss: Sequence[float] = (),
                   steps: int | None = None) -> list[dict]:
    """[{"flag", "text"}] for a run's per-step training losses and per-epoch held-out losses."""
    curve = [float(x) for x in loss_curve or []]
    held = [float(x) for x in eval_loss or []]
    steps = len(curve) if steps is None else steps
    flags = []
    if steps < MIN_STEPS:
        flags.append({"flag": "few_steps",
                      "text": f"only {steps} optimizer steps (fewer than {MIN_STEPS}): warm-up and decay take most "
                              "of the run; more data or epochs before judging the method"})
    falling = False
    if len(curve) >= MIN_CURVE:
        w = len(curve) // 4
        (last, se_last), (prev, se_prev) = _mean_se(curve[-w:]), _mean_se(curve[-2 * w:-w])
        drop = prev - last
        falling = drop > FALL_FRACTION * abs(prev) and drop > 2 * math.hypot(se_last, se_prev)
        if falling:
            flags.append({"flag": "still_falling",
                          "text": f"training loss still falling at the end ({prev:.3f} → {last:.3f} over the last "
                                  f"two quarters of the steps): under-trained, more epochs or data would likely help"})
    if len(held) >= 2:
        best = min(held[:-1])
        if held[-1] > best * (1 + RISE_FRACTION):
            flags.append({"flag": "overfitting",
                          "text": f"held-out loss rose to {held[-1]:.3f} from its best {best:.3f}"
                                  + (" while training loss kept falling" if falling else "")
                                  + ": over-fitting, fewer epochs would do better"})
        elif held[-1] < held[-2] * (1 - FALL_FRACTION):
            flags.append({"flag": "held_out_falling",
                          "text": f"held-out loss still falling over the last epoch ({held[-2]:.3f} → {held[-1]:.3f}): "
                                  "under-trained"})
    return flags


def assessed(eval_loss: Sequence[float]) -> str | None:
    """Why over-fitting could not be assessed (None when it was)."""
    n = len(eval_loss or [])
    if n >= 2:
        return None
    return "no held-out loss recorded" if n == 0 else "one held-out value (one epoch): over-fitting not assessed"
