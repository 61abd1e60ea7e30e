"""The shared training loop: loss falls, runs are deterministic, broken runs fail clearly."""
import pytest
import torch

from harness.core.errors import StrategyFailed
from harness.methods.train import TrainSettings, _collate, loss_on_targets, train
from harness.model.runtime import Runtime


def _pairs(rt, n=16):
    out = []
    for i in range(n):
        prompt = rt.encode_chat([{"role": "user", "content": f"What is code {i % 4}?"}])
        target = rt.tokenizer(f"code {i % 4} is lake", add_special_tokens=False)["input_ids"]
        target = target + [rt.tokenizer.eos_token_id]
        out.append((prompt, target))
    return out


def _lora(rt):
    import peft

    torch.manual_seed(0)  # LoRA's A matrices are randomly initialised
    return peft.get_peft_model(rt.fresh_model(), peft.LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                                  task_type="CAUSAL_LM"))


def test_sparse_loss_equals_full_loss(tiny_model):
    rt = Runtime(str(tiny_model), device="cpu", progress=False)
    ids, mask, labels, n = _collate(_pairs(rt, 4), rt.pad_id, 256, "cpu")
    assert n == int(mask.sum())
    full = loss_on_targets(rt.model, ids, mask, labels, sparse=False)
    sparse = loss_on_targets(rt.model, ids, mask, labels, sparse=True)
    assert torch.allclose(full, sparse, atol=1e-5)


def test_lora_loss_goes_down_and_is_deterministic(tiny_model):
    rt = Runtime(str(tiny_model), device="cpu", progress=False)
    s = TrainSettings(lr=1e-2, epochs=4, batch_size=4, eval_fraction=0.0)
    a = train(_lora(rt), _pairs(rt), s, pad_id=rt.pad_id, seed=1, device="cpu", progress=False)
    b = train(_lora(rt), _pairs(rt), s, pad_id=rt.pad_id, seed=1, device="cpu", progress=False)
    assert a.steps == 16 and len(a.loss_curve) == 16
    assert sum(a.loss_curve[-4:]) / 4 < sum(a.loss_curve[:4]) / 4 * 0.9
    assert a.loss_curve == b.loss_curve  # same seed, same CPU: identical run
    assert a.train_tokens > 0


def test_eval_slice_is_held_out(tiny_model):
    rt = Runtime(str(tiny_model), device="cpu", progress=False)
    rec = train(_lora(rt), _pairs(rt, 20), TrainSettings(lr=1e-3, epochs=2, batch_size=4, eval_fraction=0.1),
                pad_id=rt.pad_id, seed=0, device="cpu", progress=False)
    assert rec.eval_examples == 2 and rec.train_examples == 18
    assert len(rec.eval_loss) == 2


def test_nan_loss_and_bad_settings_fail_clearly(tiny_model):
    rt = Runtime(str(tiny_model), device="cpu", progress=False)
    with pytest.raises(StrategyFailed, match="loss became nan at step 1"):
        _train_with_nan(rt)
    with pytest.raises(StrategyFailed, match="learning rate"):
        train(_lora(rt), _pairs(rt), TrainSettings(lr=0.0), pad_id=rt.pad_id, seed=0, device="cpu", progress=False)
    with pytest.raises(StrategyFailed, match="empty"):
        train(_lora(rt), [], TrainSettings(lr=1e-3), pad_id=rt.pad_id, seed=0, device="cpu", progress=False)


def _train_with_nan(rt):
    model = _lora(rt)
    with torch.no_grad():  # poison one trainable weight: the first forward gives a NaN loss
        next(p for p in model.parameters() if p.requires_grad).fill_(float("nan"))
    train(model, _pairs(rt), TrainSettings(lr=1e-3, epochs=1, batch_size=4, eval_fraction=0),
          pad_id=rt.pad_id, seed=0, device="cpu", progress=False)
