"""Multiple choice: batched log-likelihood scoring, the choosing path, and strategies on a tiny MC corpus."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import DOCS

from harness.analysis import metrics, scoring
from harness.core.errors import DataError
from harness.core.types import Example
from harness.data.benchmark import load_benchmark
from harness.methods import prompts
from harness.model.runtime import Runtime


@pytest.fixture(scope="module")
def rt(tiny_model):
    return Runtime(str(tiny_model), device="cpu", progress=False)


def direct_logprob(model, prompt, cont):
    """Reference: one unpadded full-sequence forward pass, no cache, no batching."""
    ids = torch.tensor([prompt + cont])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
    return sum(float(logp[len(prompt) - 1 + j, t]) for j, t in enumerate(cont))


def requests_for(rt):
    enc = rt.tokenizer
    shared = rt.encode_chat([{"role": "system", "content": "Pick one."},
                             {"role": "user", "content": "Harbor City bridge"}])
    reqs = []
    for q in ("Who opened the bridge?", "When does the fair happen in Pine Valley every year?", "Depth?"):
        p = shared + enc(q, add_special_tokens=False)["input_ids"]
        for c in ("Alice Stone", "1932", "the Gray River and Lake Mira"):
            reqs.append((p, enc(c, add_special_tokens=False)["input_ids"]))
    reqs.append((reqs[0][0], [17]))  # a one-token continuation: scored from the prompt pass alone
    return reqs


@pytest.mark.parametrize("kw", [dict(), dict(batch_size=2), dict(share_prefix=False), dict(plain=True)])
def test_loglikelihood_matches_a_direct_full_sequence_pass(rt, kw):
    reqs = requests_for(rt)
    got = rt.loglikelihood(reqs, **kw)
    for (p, c), g in zip(reqs, got):
        assert g.logprob == pytest.approx(direct_logprob(rt.model, p, c), abs=1e-4)
        assert g.tokens == len(p) + len(c)
    # batch_size counts distinct prompts; all continuations of a prompt share its batch
    assert len({g.batch for g in got}) == (2 if kw.get("batch_size") == 2 else 1)


def test_loglikelihood_is_greedy_flag(rt):
    prompt = rt.encode_chat([{"role": "user", "content": "Lake Mira"}])
    out = rt.generate([prompt], max_new_tokens=3, stop_at_newline=False)[0]
    greedy = rt.tokenizer(out.text, add_special_tokens=False)["input_ids"]
    assert greedy, "the tiny model generated nothing"
    first = rt.loglikelihood([(prompt, greedy[:1])])[0]
    assert first.is_greedy
    other = next(t for t in range(5, 50) if t != greedy[0])
    assert not rt.loglikelihood([(prompt, [other])])[0].is_greedy


def test_loglikelihood_matches_lm_eval_hflm(rt):
    lm_eval = pytest.importorskip("lm_eval")  # noqa: F841
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=rt.model, tokenizer=rt.tokenizer, batch_size=4, device="cpu")
    reqs = requests_for(rt)
    theirs = lm._loglikelihood_tokens([(("", ""), p, c) for p, c in reqs], disable_tqdm=True)
    ours = rt.loglikelihood(reqs)
    for (ll, greedy), o in zip(theirs, ours):
        assert o.logprob == pytest.approx(ll, abs=1e-4)
        assert o.is_greedy == greedy


def test_loglikelihood_rejects_an_empty_continuation(rt):
    from harness.core.errors import HarnessError

    with pytest.raises(HarnessError):
        rt.loglikelihood([([1, 2, 3], [])])


# -- prompts and scoring ----------------------------------------------------------------------

MC = Example(id="m", input="Which river?", answers=("Gray River",), split="test", task="multiple_choice",
             choices=("Red River", "Gray River", "Blue River"))


def test_show_choices_lists_the_options_after_the_question():
    p = prompts.Prompter.for_task("multiple_choice")
    msgs = prompts.show_choices(p.with_context("Which river?", ["The bridge spans the Gray River."]), MC)
    text = msgs[-1]["content"]
    assert text.index("Question: Which river?\nOptions:\n- Red River\n- Gray River\n- Blue River") > 0
    assert text.endswith(p.context_request)
    plain = Example(id="q", input="Which river?", answers=("Gray River",), split="test", task="extractive_qa")
    assert prompts.show_choices(msgs, plain) is msgs


def test_score_multiple_choice_is_accuracy():
    s = metrics.score("Gray River", MC.answers, MC.input, "multiple_choice", {"choice_norm": "Red River"})
    assert (s["exact_match"], s["f1"], s["contains"], s["acc_norm"]) == (1.0, 1.0, 1.0, 0.0)
    s = metrics.score("Red River", MC.answers, MC.input, "multiple_choice")
    assert (s["exact_match"], s["f1"], s["contains"]) == (0.0, 0.0, 0.0) and "acc_norm" not in s
    assert metrics.metric_names("multiple_choice") == metrics.METRICS + ("acc_norm",)
    # free-text answers also have the model-based metrics and context recall (issue 18); the scorer
    # alone gives the three plain ones, which is what an lm-eval export reports
    assert metrics.metric_names("extractive_qa") == metrics.METRICS + ("semantic", "judge", "faithfulness",
                                                                       "context_recall")
    assert scoring.scorer_metric_names("extractive_qa") == metrics.METRICS


# -- a tiny multiple-choice corpus --------------------------------------------------------------

MC_QUESTIONS = [
    ("q1", "Who opened the Harbor City bridge?", ["Alice Stone", "Raj Patel", "Marta Ruiz"], "test", "d1"),
    ("q2", "Where does Orion Labs build satellites?", ["Denver", "Gray River", "Pine Valley"], "test", "d3"),
    ("q3", "How deep is Lake Mira?", ["310 meters", "420 meters", "1932 meters"], "test", "d4"),
    ("t1", "Which river does the Harbor City bridge span?", ["Gray River", "Lake Mira", "Denver"], "train", "d1"),
    ("t2", "Who founded Orion Labs?", ["Raj Patel", "Alice Stone", "the Miller family"], "train", "d3"),
    ("t3", "What does Marta Ruiz play?", ["the saxophone", "the piano", "jazz"], "train", "d5"),
]


def write_mc_corpus(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "documents.jsonl").write_text(
        "".join(json.dumps({"id": i, "title": t, "text": x}) + "\n" for i, t, x in DOCS))
    rows = []
    for i, q, opts, split, d in MC_QUESTIONS:
        choices = opts[1:] + opts[:1] if i.endswith("2") else opts  # the answer is not always first
        rows.append({"id": i, "question": q, "choices": choices, "answers": [opts[0]], "split": split,
                     "doc_ids": [d]})
    (root / "questions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "benchmark.json").write_text(json.dumps({"name": "tiny_mc", "task": "multiple_choice"}))
    return root


def test_mc_corpus_loads_choices(tmp_path):
    b = load_benchmark(str(write_mc_corpus(tmp_path / "mc")))
    q2 = next(e for e in b.examples if e.id == "q2")
    assert q2.choices == ("Gray River", "Pine Valley", "Denver") and q2.answers == ("Denver",)


@pytest.mark.parametrize("row, message", [
    ({"choices": ["a"]}, "at least two"),
    ({"choices": ["a", "a"]}, "all different"),
    ({"choices": ["a", ""]}, "non-empty strings"),
    ({"choices": "a|b"}, "non-empty strings"),
    ({"choices": ["a", "b"], "answers": ["c"]}, "one of its choices"),
    ({}, "non-empty strings"),
])
def test_bad_choices_are_data_errors(tmp_path, row, message):
    root = write_mc_corpus(tmp_path / "mc")
    lines = (root / "questions.jsonl").read_text().splitlines()
    bad = {**json.loads(lines[1]), "answers": ["a"], **row}
    if not row:
        bad.pop("choices")
    lines[1] = json.dumps(bad)
    (root / "questions.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=message) as exc:
        load_benchmark(str(root))
    assert "questions.jsonl:2:" in str(exc.value)


@pytest.fixture(scope="module")
def mc_run(tiny_model, tmp_path_factory):
    from harness.engine.config import RunConfig
    from harness.engine.runner import run

    root = write_mc_corpus(tmp_path_factory.mktemp("mc") / "mc")
    out = tmp_path_factory.mktemp("mc-run") / "run"
    cfg = RunConfig(benchmarks=(str(root),), strategies=("zero-shot", "few-shot", "rag", "lora"),
                    model=str(tiny_model), device="cpu", out=str(out),
                    options={"few-shot": {"shots": 2}, "rag": {"k": 2}, "lora": {"batch_size": 2}})
    run(cfg, progress=False, log=lambda *_: None)
    return out


def test_every_strategy_chooses_one_of_the_options(mc_run):
    results = json.loads((mc_run / "results.json").read_text())
    cells = {c["strategy"]: c for c in results["cells"]}
    assert set(cells) == {"zero-shot", "few-shot", "rag", "lora"}
    for c in cells.values():
        assert c["status"] == "ok", c.get("error")
        assert set(c["metrics"]) == {"exact_match", "f1", "contains", "acc_norm"}
        assert c["metrics"]["f1"]["n"] == 3
    choices = {i: set(opts) for i, _, opts, *_ in MC_QUESTIONS}
    rows = [json.loads(line) for line in (mc_run / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 12
    for r in rows:
        assert r["output"] in choices[r["id"]]
        lps = r["trace"]["choice_logprobs"]
        assert len(lps) == 3 and all(x < 0 for x in lps)
        assert r["exact_match"] == float(r["output"] == r["answers"][0])
        assert r["usage"]["prompt_tokens"] > 0 and r["usage"]["output_tokens"] == 0
    rag = [r for r in rows if r["strategy"] == "rag"]
    assert all(len(r["trace"]["retrieved_doc_ids"]) == 2 for r in rag)


def test_lora_trains_on_the_correct_choice_text(rt, tmp_path):
    from harness.methods.finetune import qa_pairs
    from harness.methods.strategy import PrepareContext

    b = load_benchmark(str(write_mc_corpus(tmp_path / "mc")))
    ctx = PrepareContext(benchmark=b, runtime=rt, workdir=tmp_path)
    train = b.split("train")
    pairs = qa_pairs(ctx, train)
    for ex, (prompt, target) in zip(train, pairs):
        assert rt.tokenizer.decode(target, skip_special_tokens=True) == ex.answers[0]
        assert "Options:\n- " + ex.choices[0] in rt.tokenizer.decode(prompt)
