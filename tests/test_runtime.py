"""Batched generation with a shared-prefix KV cache must give exactly what plain greedy decoding gives."""
import torch

from harness.model.batching import common_prefix_len as _common_prefix_len
from harness.model.runtime import Runtime


def test_common_prefix_len():
    assert _common_prefix_len([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert _common_prefix_len([[5], [6]]) == 0


def _reference(rt, prompt, n):
    """Plain greedy decoding, one prompt at a time, through transformers' generate."""
    out = rt.model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                            max_new_tokens=n, do_sample=False, eos_token_id=sorted(rt.stop_ids),
                            pad_token_id=rt.pad_id)
    ids = [t for t in out[0, len(prompt):].tolist() if t not in rt.stop_ids]
    return ids


def test_batched_prefix_generation_matches_greedy(tiny_model):
    rt = Runtime(str(tiny_model), device="cpu", progress=False)
    questions = ["Who opened the Harbor City bridge?", "How deep is Lake Mira?",
                 "What instrument does Marta Ruiz play in the cafe on Fridays?", "Who founded Orion Labs?",
                 "When?"]
    prompts = [rt.encode_chat([{"role": "system", "content": "Answer briefly."},
                               {"role": "user", "content": q}]) for q in questions]
    assert _common_prefix_len(prompts) >= 8  # the shared system prompt is reused from the cache
    n = 6
    for share in (True, False):
        gens = rt.generate(prompts, max_new_tokens=n, batch_size=2, stop_at_newline=False, share_prefix=share)
        for p, g in zip(prompts, gens):
            ref = _reference(rt, p, n)
            assert g.output_tokens == len(ref)
            assert g.text == rt.tokenizer.decode(ref, skip_special_tokens=True)
            assert g.prompt_tokens == len(p)
    assert {g.batch_size for g in gens} == {2, 1}


def test_stop_at_newline_cuts_after_visible_text(tiny_model):
    rt = Runtime(str(tiny_model), device="cpu", progress=False)
    prompts = [rt.encode_chat([{"role": "user", "content": q}]) for q in ("Who?", "Where is it?")]
    full = rt.generate(prompts, max_new_tokens=12, stop_at_newline=False)
    cut = rt.generate(prompts, max_new_tokens=12, stop_at_newline=True)
    for f, c in zip(full, cut):
        assert f.text.startswith(c.text)
        visible = c.text.strip()
        if visible:  # once text was produced, at most one newline ends the output
            assert c.text.rstrip("\n").count("\n") <= c.text.lstrip().count("\n")
            assert "\n" not in c.text.strip()


def test_length_batches_respect_both_caps():
    from harness.model.batching import length_batches as _length_batches

    prompts = [[0] * n for n in (500, 10, 20, 480, 30, 490, 15)]
    batches = _length_batches(prompts, batch_size=3, max_tokens=1000)
    assert sorted(i for b in batches for i in b) == list(range(7))
    for b in batches:
        assert len(b) <= 3
        assert len(b) == 1 or len(b) * max(len(prompts[i]) for i in b) <= 1000
    lengths = [len(prompts[i]) for b in batches for i in b]
    assert lengths == sorted(lengths)  # sorted by length, so little padding
