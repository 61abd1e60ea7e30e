"""Answer generation: the harness's batched decoder against lm-eval's HFLM `generate_until` and
against the plain script of REFERENCE.md (file-order batches of 16, left padding, `generate`).

All three get the same model object, the same chat-templated prompts (the harness's closed-book
prompt, and its RAG prompt with the top-3 retrieved chunks), greedy decoding, at most 24 new
tokens, batch 16, and stop at the first newline after text. Runs are interleaved (harness,
lm-eval, plain, harness, ...). Throughput is tokens/s, prompt plus generated tokens, counted with
the harness's tokenizer; outputs are compared after stripping whitespace.
"""
from __future__ import annotations

import torch

from .common import Options, embed_index, interleaved, load

MAX_NEW = 24
BATCH = 16


def prompts_for(rt, bench, n_closed: int, n_rag: int, k: int = 3) -> dict[str, list[str]]:
    """Chat-templated prompt strings of both conditions, built by the harness's own strategies."""
    from harness.methods import prompts
    from strategies.rag import RagConfig

    prompter = prompts.Prompter.for_benchmark(bench)
    test = bench.split("test")
    out = {"closed-book": [prompter.closed_book(e.input) for e in test[:n_closed]]}
    if n_rag:
        c = RagConfig(k=k)
        index = embed_index(c.embedder, rt.device)
        index.build(bench.documents, c.chunk_words, c.chunk_overlap)
        qs = test[:n_rag]
        hits, _ = index.search([e.input for e in qs], k)
        out[f"rag top-{k}"] = [prompter.with_context(e.input, [h.text for h in hit]) for e, hit in zip(qs, hits)]
    tok = rt.tokenizer
    return {name: [tok.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in msgs]
            for name, msgs in out.items()}


def harness_side(rt, texts):
    def run():
        ids = [rt.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        gens = rt.generate(ids, max_new_tokens=MAX_NEW, batch_size=BATCH)
        return [g.text for g in gens]
    return run


def lm_eval_side(rt, texts):
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=rt.model, tokenizer=rt.tokenizer, batch_size=BATCH, device=rt.device)
    kwargs = {"until": ["\n"], "max_gen_toks": MAX_NEW, "do_sample": False}
    requests = [Instance(request_type="generate_until", doc={}, arguments=(t, dict(kwargs)), idx=i)
                for i, t in enumerate(texts)]

    def run():
        return lm.generate_until(requests, disable_tqdm=True)
    return run


def plain_side(rt, texts):
    """REFERENCE.md's plain script: batches in file order, left padding, transformers' generate."""
    tok, model = rt.tokenizer, rt.model
    stops = sorted(rt.stop_ids)

    @torch.inference_mode()
    def run():
        side, tok.padding_side = tok.padding_side, "left"
        outs = []
        try:
            for b in range(0, len(texts), BATCH):
                enc = tok(texts[b: b + BATCH], return_tensors="pt", padding=True, add_special_tokens=False)
                enc = {k: v.to(rt.device) for k, v in enc.items()}
                gen = model.generate(**enc, max_new_tokens=MAX_NEW, do_sample=False, eos_token_id=stops,
                                     pad_token_id=rt.pad_id)
                for row in gen[:, enc["input_ids"].shape[1]:].tolist():
                    text = tok.decode([t for t in row if t not in stops], skip_special_tokens=True)
                    outs.append(text.lstrip().split("\n", 1)[0] if text.strip() else text)
        finally:
            tok.padding_side = side
        return outs
    return run


def padded_positions(lengths: list[int], batches: list[list[int]]) -> int:
    return sum(len(b) * max(lengths[i] for i in b) for b in batches)


def measure(opts: Options) -> dict:
    from harness.model.batching import length_batches

    rt, bench = load(opts)
    conditions = prompts_for(rt, bench, opts.n(48, 4), opts.n(32, 4) if not opts.dry_run else 4)
    out = {}
    for name, texts in conditions.items():
        makers = {"harness": harness_side, "lm-eval": lm_eval_side, "plain": plain_side}
        for make in makers.values():  # warm-up: allocator, lazily built tables, first-call costs
            make(rt, texts[:2])()
        sides = {name: make(rt, texts) for name, make in makers.items()}
        seconds, outputs = interleaved(sides, opts.reps, rt.device)
        lengths = [len(rt.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
        prompt_tokens = sum(lengths)
        cond = {"questions": len(texts), "prompt_tokens": prompt_tokens, "sides": {}}
        for side, texts_out in outputs.items():
            gen_tokens = sum(len(rt.tokenizer(o, add_special_tokens=False)["input_ids"]) for o in texts_out)
            tps = [(prompt_tokens + gen_tokens) / s for s in seconds[side]]
            cond["sides"][side] = {"seconds": seconds[side], "generated_tokens": gen_tokens, "tokens_per_s": tps}
        ours = [o.strip() for o in outputs["harness"]]
        cond["agree_with_lm_eval"] = sum(a == b.strip() for a, b in zip(ours, outputs["lm-eval"])) / len(texts)
        cond["agree_with_plain"] = sum(a == b.strip() for a, b in zip(ours, outputs["plain"])) / len(texts)
        cond["padded_prompt_positions"] = {
            "length-sorted": padded_positions(lengths, length_batches([[0] * n for n in lengths], BATCH,
                                                                      rt.max_batch_tokens)),
            "file order": padded_positions(lengths, [list(range(b, min(b + BATCH, len(texts))))
                                                     for b in range(0, len(texts), BATCH)]),
        }
        out[name] = cond
    return out
