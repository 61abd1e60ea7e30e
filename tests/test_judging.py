"""Answers judged as a reader would (issue 18): the model-based metrics (semantic, judge, faithfulness),
their cache, the trust figures, answer styles and answer budgets, and the gate and the recommendation
on a judge-style headline."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from harness import cli
from harness.analysis import judges, trust
from harness.analysis.recompute import analyze
from harness.analysis.scoring import context_recall, score_with, token_f1
from harness.core.errors import ConfigError, HarnessError
from harness.core.records import read_jsonl, write_jsonl
from harness.data.benchmark import answer_budget, load_benchmark
from harness.data.corpus import check_corpus
from harness.engine.config import RunConfig
from harness.engine.plan import answer_tokens, headline
from harness.engine.runner import run
from harness.model.runtime import loop_period
from harness.report.gate import gate

EXAMPLE = Path(__file__).resolve().parent.parent / "reports" / "example"


# -- semantic -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def embedder():
    return judges.Embedder()  # the packaged MiniLM, as RAG uses it


GOLD = "A cache keeps copies of recently used data close by so that later requests are answered faster."
PARAPHRASE = "It stores duplicates of information you accessed before, which makes the next lookups quicker."
WRONG = "A cache is a hidden store of food or weapons that someone keeps close by for later."  # shares words


def test_semantic_credits_a_paraphrase_token_f1_misses_and_ranks_a_wrong_definition_below_it(embedder):
    f1_para, f1_wrong = token_f1(PARAPHRASE, [GOLD]), token_f1(WRONG, [GOLD])
    assert f1_para < 0.1 < 0.4 < f1_wrong  # token F1 ranks them the wrong way round
    sim_para, sim_wrong = embedder.similarity([PARAPHRASE, WRONG], [[GOLD], [GOLD]])
    assert sim_para > judges.SEMANTIC_THRESHOLD  # measured 0.683
    assert sim_wrong < sim_para  # measured 0.637: ranked right, though not below the threshold (README)
    # an empty answer and an unrelated one are far from the gold
    empty, unrelated = embedder.similarity(["", "The river floods every spring."], [[GOLD], [GOLD]])
    assert empty == 0.0 and unrelated < judges.SEMANTIC_THRESHOLD


def test_semantic_takes_the_closest_of_several_gold_answers(embedder):
    one, two = embedder.similarity(["Paris"] * 2, [["Berlin"], ["Berlin", "Paris"]])
    assert two == pytest.approx(1.0, abs=1e-5) and one < two


def test_context_recall_is_pure_and_needs_retrieved_text():
    assert context_recall(["Alice Stone"], ["The bridge was opened by mayor Alice Stone."]) == 1.0
    # function words do not count: content words took, bus, work, early; bus and work are in the context
    assert context_recall(["He took the bus to work early."], ["The bus was late for work"]) == 0.5
    scored = score_with("sentence", "An answer.", ["gold words"], "Q?", "generative_qa",
                        {"retrieved_texts": ["some gold text"]})
    assert scored["context_recall"] == 0.5
    assert "context_recall" not in score_with("sentence", "An answer.", ["gold"], "Q?", "generative_qa", {})


def test_calibration_pairs_are_labelled_as_documented():
    rows = [json.loads(line) for line in (Path(__file__).resolve().parent.parent / "corpora" / "cosmosqa"
                                          / "calibration.jsonl").read_text(encoding="utf-8").splitlines()]
    bench = {e.id: e for e in load_benchmark("cosmosqa").examples}
    assert len(rows) == 655 and sum(r["label"] for r in rows) == 183
    assert {r["kind"] for r in rows} == {"second gold", "ni correct", "ni incorrect"}
    for r in rows:
        e = bench[r["id"]]
        assert r["reference"] == e.answers[0] and r["split"] == e.split and r["candidate"] != r["reference"]
        assert r["label"] == (r["kind"] != "ni incorrect")


# -- the judge ----------------------------------------------------------------------------------------
class TextJudge:
    """A ChatModel without log-likelihoods (like an endpoint): its verdicts are parsed from its text."""

    def __init__(self, replies):
        self.replies, self.calls = list(replies), 0

    name = "fake"

    def fingerprint(self):
        return {"backend": "fake"}

    def chat(self, conversations, max_new_tokens, stop=None, *, stop_at_newline=True):
        self.calls += len(conversations)
        return [SimpleNamespace(text=self.replies.pop(0)) for _ in conversations]


class ScoringJudge(TextJudge):
    """A ChatModel that also scores continuations: the verdict is the most likely label."""

    def __init__(self, replies, logprobs):
        super().__init__(replies)
        self.logprobs, self.seen = list(logprobs), []

    def option_logprobs(self, conversations, options):
        self.seen.append((conversations, list(options)))
        return [self.logprobs.pop(0) for _ in conversations]


ITEM = {"question": "Why was I tired?", "answers": ["I slept badly."], "answer": "I did not sleep well."}


def test_judge_parses_a_text_verdict_and_keeps_the_rationale():
    rubric = judges.RUBRICS[("judge", "v1")]
    replies = ["Same meaning in other words.\nVerdict: correct", "Half of it.\nVerdict: partially correct",
               "Verdict: incorrect", "I think it is fine."]
    out = judges.grade(TextJudge(replies), rubric, [ITEM] * 4)
    assert [o["value"] for o in out] == [1.0, 0.5, 0.0, None]
    assert [o["verdict"] for o in out] == ["correct", "partially correct", "incorrect", None]
    assert out[0]["rationale"] == "Same meaning in other words."
    assert out[3]["by"].startswith("text (no verdict")


def test_judge_scores_labels_after_its_reasons_and_never_asks_about_an_empty_answer():
    rubric = judges.RUBRICS[("judge", "v1")]
    model = ScoringJudge(["Both say the night was bad.\nmore"], [[-0.1, -3.0, -2.5]])
    out = judges.grade(model, rubric, [ITEM, {**ITEM, "answer": "  "}])
    assert model.calls == 1  # the empty answer is wrong by rule
    assert out[0]["verdict"] == "correct" and out[0]["value"] == 1.0 and out[0]["by"] == "log-likelihood"
    assert out[0]["rationale"] == "Both say the night was bad."  # one line of reasons
    assert sum(out[0]["p"].values()) == pytest.approx(1.0, abs=1e-3)
    convs, options = model.seen[0]
    assert options == [" correct", " partially correct", " incorrect"]
    assert convs[0][-1] == {"role": "assistant", "content": "Both say the night was bad.\nVerdict:"}
    assert "Reference answer: I slept badly." in convs[0][1]["content"]
    assert out[1] == {"value": 0.0, "verdict": "incorrect", "rationale": "empty answer", "by": "rule"}
    # reason_tokens 0: the verdict alone, nothing generated
    quiet = ScoringJudge([], [[-2.0, -3.0, -0.5]])
    alone = judges.grade(quiet, rubric, [ITEM], 0)
    assert quiet.calls == 0 and alone[0]["verdict"] == "incorrect" and alone[0]["rationale"] == ""
    assert quiet.seen[0][0][0][-1] == {"role": "assistant", "content": "Verdict:"}


def test_judge_config_is_checked():
    with pytest.raises(ConfigError, match="rubric"):
        judges.JudgeConfig.from_dict({"rubric": "v99"})
    with pytest.raises(ConfigError, match="unknown key"):
        judges.JudgeConfig.from_dict({"temperature": 1})
    with pytest.raises(ConfigError, match="metrics are computed by a model"):
        RunConfig(metrics=("f1",))
    with pytest.raises(ConfigError, match="metric must be one of"):
        RunConfig(metric="context_recall")  # a RAG diagnostic, not a headline


def _judged_run(tiny_model, tiny_corpus, out, **kw):
    cfg = RunConfig(benchmarks=(str(tiny_corpus),), strategies=("zero-shot", "rag"), model=str(tiny_model),
                    device="cpu", max_new_tokens=6, batch_size=4, out=str(out), options={"rag": {"k": 2}},
                    metrics=("semantic", "judge", "faithfulness"), **kw)
    run_dir = run(cfg, progress=False, log=lambda m: None)
    return json.loads((run_dir / "results.json").read_text()), read_jsonl(run_dir / "predictions.jsonl")


def test_judge_values_are_cached_and_a_new_rubric_version_recomputes(tiny_model, tiny_corpus, tmp_path):
    res, rows = _judged_run(tiny_model, tiny_corpus, tmp_path / "a")
    cells = {c["strategy"]: c for c in res["cells"]}
    assert cells["rag"]["judging"]["judge"]["computed"] == 6
    assert cells["rag"]["judging"]["faithfulness"]["computed"] == 6
    assert cells["zero-shot"]["judging"]["faithfulness"]["computed"] == 0  # no context, nothing to check
    rag = [r for r in rows if r["strategy"] == "rag"]
    assert all(len(r["trace"]["retrieved_texts"]) == 2 for r in rag)
    assert all({"semantic", "judge", "context_recall"} <= set(r) for r in rag)
    assert all(("faithfulness" in r) == bool(r["output"].strip()) for r in rag)  # an empty answer claims nothing
    assert all(r["judgments"]["judge"]["rubric"] == "judge-v1" for r in rag)
    zs = [r for r in rows if r["strategy"] == "zero-shot"]
    assert all("faithfulness" not in r and "context_recall" not in r for r in zs)
    # the same run again: every answer and every judgment from the cache, no model loaded
    res2, rows2 = _judged_run(tiny_model, tiny_corpus, tmp_path / "b")
    assert res2["model"]["load"] is None
    for c in res2["cells"]:
        assert all(j["computed"] == 0 for j in c["judging"].values())
    assert [r.get("judge") for r in rows2] == [r.get("judge") for r in rows]
    # another rubric version: the judgments (not the answers) are computed again
    for metric in ("judge", "faithfulness"):
        base = judges.RUBRICS[(metric, "v1")]
        judges.register_rubric(judges.Rubric(metric, "test-v2", base.system + " Be strict.", base.template,
                                             base.labels))
    try:
        res3, _ = _judged_run(tiny_model, tiny_corpus, tmp_path / "c", judge={"rubric": "test-v2"})
    finally:
        for metric in ("judge", "faithfulness"):
            judges.RUBRICS.pop((metric, "test-v2"))
    rag3 = next(c for c in res3["cells"] if c["strategy"] == "rag")
    assert rag3["cache"]["predictions_computed"] == 0
    assert rag3["judging"]["judge"]["computed"] == 6 and rag3["judging"]["semantic"]["computed"] == 0
    assert rag3["judging"]["judge"]["fingerprint"] != cells["rag"]["judging"]["judge"]["fingerprint"]


# -- trust figures ------------------------------------------------------------------------------------
def test_cohen_kappa_against_a_hand_computation():
    # 50 items: both right 20, only a 5, only b 10, both wrong 15. Observed agreement 35/50 = 0.70;
    # a says right 25/50, b 30/50, so chance agreement 0.5 x 0.6 + 0.5 x 0.4 = 0.50; kappa 0.2 / 0.5 = 0.40.
    a = [1] * 20 + [1] * 5 + [0] * 10 + [0] * 15
    b = [1] * 20 + [0] * 5 + [1] * 10 + [0] * 15
    assert trust.cohen_kappa(a, b) == pytest.approx(0.40)
    assert trust.cohen_kappa(a, a) == pytest.approx(1.0)
    assert trust.cohen_kappa([1, 1], [1, 1]) is None  # chance agreement 1: undefined
    agree = trust.agreement([1.0, 0.5, 0.0, 1.0], [1.0, 1.0, 0.0, 0.0])
    assert agree["table"] == {"1": [1, 1], "0.5": [1, 0], "0": [0, 1]}
    assert agree["agreement"] == 0.5  # partially correct counts as wrong
    # kappa here: judge right 2/4, reference right 2/4, observed 2/4 -> chance 0.5 -> kappa 0
    assert agree["kappa"] == pytest.approx(0.0)


def test_spearman_and_the_length_check():
    assert trust.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert trust.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties share their mean rank: x ranks 0, 1.5, 1.5, 3 against y ranks 0..3 -> r = 0.9487
    assert trust.spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486833)
    rows = [{"judge": 1.0, "exact_match": 0.0, "contains": 1.0, "output": "a b c d", "answers": ["x"]},
            {"judge": 0.0, "exact_match": 0.0, "contains": 0.0, "output": "a", "answers": ["x"]},
            {"judge": 1.0, "exact_match": 1.0, "contains": 1.0, "output": "a b c", "answers": ["x"]}]
    f = trust.figures(rows, ["judge", "semantic"])
    assert set(f["metrics"]) == {"judge"} and f["gold_median_words"] == 1
    assert f["metrics"]["judge"]["vs"]["contains"]["kappa"] == pytest.approx(1.0)
    assert f["metrics"]["judge"]["length"]["words_when_right"] == 3.5


# -- answer styles and budgets ------------------------------------------------------------------------
def _corpus(root: Path, card: dict, answer: str = "The bridge was opened in the spring by the mayor herself.") -> Path:
    root.mkdir()
    (root / "documents.jsonl").write_text(json.dumps({"id": "d1", "text": "Some text about a bridge."}) + "\n")
    (root / "questions.jsonl").write_text("".join(
        json.dumps({"id": f"q{i}", "question": "Who opened it?", "answers": [answer], "split": "test",
                    "doc_ids": ["d1"]}) + "\n" for i in range(4)))
    (root / "benchmark.json").write_text(json.dumps(card))
    return root


def test_answer_style_picks_the_task_type_and_the_budget_follows_gold_lengths(tmp_path):
    b = load_benchmark(str(_corpus(tmp_path / "s", {"answer_style": "sentence"})))
    assert b.task == "generative_qa"
    # p90 of 11 words x 1.4 tokens a word x 1.5 headroom = 23.1 -> 24 (a multiple of 8, and the floor)
    assert answer_budget(b) == (24, "gold answers (p90 11 words)")
    long = load_benchmark(str(_corpus(tmp_path / "f", {"answer_style": "free_form"}, " ".join(["word"] * 40))))
    assert long.task == "free_form_qa" and answer_budget(long)[0] == 88  # 40 x 1.4 x 1.5 = 84 -> 88
    assert answer_tokens(RunConfig(), long) == 88
    assert answer_tokens(RunConfig(max_new_tokens=16), long) == 16  # the run's own value wins
    card = load_benchmark(str(_corpus(tmp_path / "c", {"answer_style": "short", "max_new_tokens": 40,
                                                       "metric": "semantic"})))
    assert card.task == "extractive_qa" and answer_budget(card) == (40, "benchmark.json")
    assert headline(RunConfig(), card) == "semantic" and headline(RunConfig(metric="f1"), card) == "f1"
    assert headline(RunConfig(), load_benchmark("cosmosqa")) == "semantic"  # generative_qa's headline
    assert answer_budget(load_benchmark("squadshifts_nyt"))[0] == 24  # short answers: the old default


def test_bad_answer_keys_are_listed_by_corpus_check(tmp_path):
    root = _corpus(tmp_path / "bad", {"task": "extractive_qa", "answer_style": "sentence", "max_new_tokens": 0,
                                      "metric": "faithfulness"})
    problems = [p.message for p in check_corpus(root).problems]
    assert any("answer_style 'sentence' is answered by task 'generative_qa'" in p for p in problems)
    assert any("max_new_tokens must be an integer" in p for p in problems)
    assert any("metric 'faithfulness' cannot head" in p for p in problems)
    assert [p.message for p in check_corpus(_corpus(tmp_path / "u", {"answer_style": "poem"})).problems] == [
        "unknown answer_style 'poem'; known: short, sentence, free_form"]


def test_a_looping_answer_is_detected():
    out = torch.tensor([[7, 1, 2, 1, 2, 1, 2, 1, 2],      # period 2, 4 repeats (8 tokens)
                        [3, 4, 5, 6, 7, 8, 9, 10, 11],    # no loop
                        [5, 0, 0, 0, 0, 0, 1, 2, 3],      # zeros inside a number, then more
                        [9, 4, 5, 6, 4, 5, 6, 4, 5]])     # period 3, only 2.67 repeats at the end
    assert loop_period(out).tolist() == [2, 0, 0, 0]
    assert loop_period(torch.tensor([[1, 4, 5, 6, 4, 5, 6, 4, 5, 6]])).tolist() == [3]


def test_the_decoder_stops_a_looping_answer(tiny_model):
    from harness.model.runtime import Runtime

    rt = Runtime(str(tiny_model), device="cpu", progress=False)
    prompts = [rt.encode_chat([{"role": "user", "content": q}]) for q in ("Who opened the bridge?", "How deep?")]
    full = rt.generate(prompts, max_new_tokens=24, stop_at_newline=False)
    cut = rt.generate(prompts, max_new_tokens=24, stop_at_newline=False, stop_on_loop=True)
    looping = [f for f in full if loop_period(torch.tensor([rt.tokenizer(f.text)["input_ids"][-12:]])).item()]
    assert looping  # the random tiny model repeats itself: what the stop is for
    for f, c in zip(full, cut):
        assert f.text.startswith(c.text)
        if f in looping:
            assert c.output_tokens < f.output_tokens == 24


# -- a judge-style headline in the report, the recommendation and the gate ----------------------------
def _with_judge(tmp_path: Path, name: str, judge_of) -> Path:
    run = tmp_path / name
    shutil.copytree(EXAMPLE, run)
    rows = read_jsonl(run / "predictions.jsonl")
    for r in rows:
        r["judge"] = judge_of(r)
        r["judgments"] = {"judge": {"value": r["judge"], "verdict": "correct" if r["judge"] else "incorrect",
                                    "rationale": "because", "by": "log-likelihood", "judge": "test",
                                    "rubric": "judge-v1"}}
    write_jsonl(run / "predictions.jsonl", rows)
    return run


def test_report_recommendation_and_gate_on_a_judge_headline(tmp_path):
    # a judge that agrees with containment, except that it credits every rag answer
    run = _with_judge(tmp_path, "a", lambda r: 1.0 if r["strategy"] == "rag" else r["contains"])
    results, rows = analyze(run, metric="judge")
    a = results["analysis"]
    assert a["primary_metric"]["squadshifts_nyt"] == "judge"
    bench = a["benchmarks"]["squadshifts_nyt"]["0"]
    assert bench["comparisons"]["tested"] == {"em": "exact_match", "f1": "judge"}  # graded: bootstrapped
    verdict = a["decisions"]["squadshifts_nyt"]["verdict"]
    assert verdict["chosen"] == "rag" and verdict["metric"] == "judge score"
    assert "**rag**, judge score 1.000 (95% CI 1.000–1.000" in verdict["reasons"][0]
    fig = bench["trust"]["metrics"]["judge"]["vs"]["contains"]
    ref = [r for r in rows if "judge" in r]
    hand = trust.cohen_kappa([int(r["judge"] > 0.5) for r in ref], [int(r["contains"] > 0.5) for r in ref])
    assert fig["kappa"] == pytest.approx(hand) and 0 < fig["kappa"] < 1
    assert cli.main(["report", str(run), "--metric", "judge"]) == 0
    md = (run / "report.md").read_text()
    assert "Headline metric: judge score." in md and "### How far to trust the model-based metrics" in md
    assert "Where Judge and containment disagree" in md and "| Judge difference [95% CI] |" in md
    # the gate on the judge: the same run passes, a run whose judge drops on rag fails
    worse = _with_judge(tmp_path, "b", lambda r: r["contains"])
    assert gate(str(run), str(run), metric="judge", out=lambda m: None) == 0
    assert gate(str(run), str(worse), metric="judge", out=lambda m: None) == 1


def test_report_on_a_run_that_was_not_judged(tmp_path, capsys):
    run = tmp_path / "plain"
    shutil.copytree(EXAMPLE, run)
    assert cli.main(["report", str(run), "--metric", "judge"]) == 2
    err = capsys.readouterr().err
    assert "no 'judge' values" in err and "--metrics judge" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(HarnessError, match="cannot head"):
        analyze(run, metric="faithfulness")
    assert gate(str(EXAMPLE), str(EXAMPLE), metric="f1", out=lambda m: None) == 0
    with pytest.raises(HarnessError, match="harness run --metrics judge"):
        gate(str(EXAMPLE), str(EXAMPLE), metric="judge", out=lambda m: None)
