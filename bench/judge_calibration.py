"""Calibrate `semantic`'s threshold and check the metrics against people's labels.

    python -m bench.judge_calibration [--judge] [--judge-split test] [--judge-limit N] [--out FILE]

Data: corpora/cosmosqa/calibration.jsonl (built by corpora/cosmosqa/build_calibration.py): a question's
first gold answer against a candidate answer that Cosmos QA's crowd workers wrote as right (a second
correct answer) or as wrong (a plausible distractor). For `semantic` (MiniLM cosine) and, as the
baseline, token F1, the threshold that maximises balanced accuracy on the train questions' pairs is
chosen and then scored on the test questions' pairs: accuracy, balanced accuracy, Cohen's kappa with
the labels. `--judge` also runs the LLM judge (rubric v1, the default model unless --model) on the
chosen split's pairs: a verdict of "correct" counts as right.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from harness.analysis.judges import RUBRICS, Embedder, grade
from harness.analysis.scoring import token_f1
from harness.analysis.trust import cohen_kappa
from harness.model.chat import LocalChatModel

DATA = Path(__file__).resolve().parents[1] / "corpora" / "cosmosqa" / "calibration.jsonl"


def rates(pred: list[int], gold: list[int]) -> dict:
    tp = sum(p and g for p, g in zip(pred, gold))
    tn = sum((not p) and (not g) for p, g in zip(pred, gold))
    pos, neg = sum(gold), len(gold) - sum(gold)
    tpr, tnr = tp / pos if pos else None, tn / neg if neg else None
    return {"n": len(gold), "accuracy": round((tp + tn) / len(gold), 4),
            "balanced_accuracy": round((tpr + tnr) / 2, 4) if pos and neg else None,
            "true_positive_rate": round(tpr, 4) if tpr is not None else None,
            "true_negative_rate": round(tnr, 4) if tnr is not None else None,
            "kappa": round(k, 4) if (k := cohen_kappa(pred, gold)) is not None else None}


def best_threshold(scores: list[float], gold: list[int]) -> float:
    """The cut (a midpoint between neighbouring scores) with the highest balanced accuracy."""
    xs = sorted(set(scores))
    cuts = [(a + b) / 2 for a, b in zip(xs, xs[1:])] or xs
    def bal(t):
        return rates([int(s >= t) for s in scores], gold)["balanced_accuracy"] or 0.0
    return max(cuts, key=lambda t: (bal(t), -abs(t - 0.5)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--judge", action="store_true", help="also run the LLM judge on --judge-split's pairs")
    ap.add_argument("--judge-split", default="test")
    ap.add_argument("--judge-limit", type=int)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--reason-tokens", type=int, default=32, help="0: the verdict alone, without reasons first")
    ap.add_argument("--out", help="write the figures as JSON here")
    args = ap.parse_args(argv)
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    train = [r for r in rows if r["split"] == "train"]
    test = [r for r in rows if r["split"] == "test"]
    t0 = time.perf_counter()
    emb = Embedder()
    sims = emb.similarity([r["candidate"] for r in rows], [[r["reference"]] for r in rows])
    for r, s in zip(rows, sims):
        r["semantic"], r["f1"] = s, token_f1(r["candidate"], [r["reference"]])
    out = {"pairs": {"train": len(train), "test": len(test),
                     "right": sum(r["label"] for r in rows), "wrong": sum(1 - r["label"] for r in rows)},
           "embedding_seconds": round(time.perf_counter() - t0, 1)}
    for name in ("semantic", "f1"):
        t = best_threshold([r[name] for r in train], [r["label"] for r in train])
        out[name] = {"threshold": round(t, 4),
                     "train": rates([int(r[name] >= t) for r in train], [r["label"] for r in train]),
                     "test": rates([int(r[name] >= t) for r in test], [r["label"] for r in test]),
                     "mean_right": round(sum(r[name] for r in rows if r["label"]) / max(1, out["pairs"]["right"]), 4),
                     "mean_wrong": round(sum(r[name] for r in rows if not r["label"])
                                         / max(1, out["pairs"]["wrong"]), 4)}
    from harness.analysis.judges import SEMANTIC_THRESHOLD

    out["semantic"]["shipped_threshold"] = SEMANTIC_THRESHOLD
    out["semantic"]["shipped_test"] = rates([int(r["semantic"] >= SEMANTIC_THRESHOLD) for r in test],
                                            [r["label"] for r in test])
    if args.judge:
        from harness.model.runtime import Runtime

        pairs = [r for r in rows if r["split"] == args.judge_split][: args.judge_limit]
        rt = Runtime(args.model, device="cpu", progress=False)
        model = LocalChatModel(rt, name=args.model)
        t0 = time.perf_counter()
        items = [{"question": r["question"], "answers": [r["reference"]], "answer": r["candidate"]} for r in pairs]
        verdicts = grade(model, RUBRICS[("judge", "v1")], items, args.reason_tokens)
        table = {}
        for r, v in zip(pairs, verdicts):
            table.setdefault(v["verdict"], [0, 0])[0 if r["label"] else 1] += 1
        out["judge"] = {"model": args.model, "rubric": "judge-v1", "split": args.judge_split,
                        "reason_tokens": args.reason_tokens,
                        "seconds": round(time.perf_counter() - t0, 1),
                        "verdict_vs_label": {k: {"right": a, "wrong": b} for k, (a, b) in table.items()},
                        "correct_is_right": rates([int(v["value"] > 0.5) for v in verdicts],
                                                  [r["label"] for r in pairs]),
                        "not_incorrect_is_right": rates([int(v["value"] > 0) for v in verdicts],
                                                        [r["label"] for r in pairs]),
                        "examples": [{"reference": r["reference"], "candidate": r["candidate"], "label": r["label"],
                                      "verdict": v["verdict"], "rationale": v["rationale"]}
                                     for r, v in list(zip(pairs, verdicts))[:8]]}
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
