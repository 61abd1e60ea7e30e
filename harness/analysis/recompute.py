"""Everything a report states, recomputed from a run's records: scores, statistics, costs, decision.

Costs and the recommendation come from the serving-cost model (analysis/serving.py) and the decision
rules (analysis/verdicts.py), one decision per benchmark pooled over the run's seeds.

Predictions are rescored against the benchmark's gold answers (loaded by the name or path the run
used), so a scoring change or an edited or external predictions file (only `id` and `output` are
required per line) needs no model run. Nothing here imports torch or loads a model.
"""
from __future__ import annotations

import json
from pathlib import Path

from harness.analysis import metrics, serving, stats, verdicts
from harness.analysis.verdicts import DecisionConfig
from harness.core.errors import DataError, HarnessError
from harness.data.tasks import DEFAULT_TASK

EXTERNAL = "external"  # strategy name for prediction lines that do not say which strategy made them
LABELS = {"f1": "token F1", "exact_match": "accuracy"}  # how the report names the headline metric


def metric_label(name: str) -> str:
    """"token F1", "accuracy", or the registered metric's label."""
    return LABELS.get(name) or metrics.get_metric(name).label


def read_run(path, predictions: bool = True, require_predictions: bool = False) -> tuple[dict, list[tuple[int, dict]]]:
    """A run folder (or its results.json): its results, and predictions.jsonl's lines with their line
    numbers. The one reader of run records: report, compare, gate and --resume all use it, so a bad
    record is one error naming the file and line wherever it is read."""
    path = Path(path)
    run_dir = path.parent if path.name == "results.json" and path.is_file() else path
    res = run_dir / "results.json"
    try:
        results = json.loads(res.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HarnessError(f"{path}: no results.json here; give a run folder or its results.json") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"not valid JSON ({exc})", res) from None
    except OSError as exc:
        raise HarnessError(f"{res}: cannot read it ({exc.strerror or exc})") from None
    if not isinstance(results, dict) or not isinstance(results.get("cells"), list) \
            or not isinstance(results.get("benchmarks"), list):
        raise DataError("not a run record (needs 'cells' and 'benchmarks')", res)
    rows = []
    pred = run_dir / "predictions.jsonl"
    if predictions and not pred.is_file() and require_predictions:
        raise DataError("predictions.jsonl is missing beside results.json; per-question scores are needed", pred)
    if predictions and pred.is_file():
        try:
            text = pred.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"not UTF-8 ({exc.reason})", pred) from None
        for n, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"invalid JSON ({exc.msg})", pred, n) from None
            if not isinstance(obj, dict) or not isinstance(obj.get("id"), str) \
                    or not isinstance(obj.get("output"), str):
                raise DataError("each line needs a string 'id' and a string 'output'", pred, n)
            rows.append((n, obj))
    return results, rows


def _gold(results: dict, run_dir: Path) -> dict[str, dict]:
    """benchmark name -> {"task", "examples": id -> Example or None, "note"}, loaded without a model."""
    from harness.data.benchmark import load_benchmark

    names = results.get("config", {}).get("benchmarks") or []
    out = {}
    for i, b in enumerate(results["benchmarks"]):
        ref = names[i] if i < len(names) else b["name"]
        try:
            bench = load_benchmark(ref)
            out[b["name"]] = {"task": bench.task, "examples": {e.id: e for e in bench.examples}, "note": None,
                              "titles": {d.id: d.title for d in bench.documents}}
        except HarnessError as exc:
            out[b["name"]] = {"task": b.get("task", DEFAULT_TASK), "examples": None, "titles": {},
                              "note": f"benchmark {ref!r} could not be loaded ({exc}); gold answers taken from "
                                      "predictions.jsonl"}
    return out


def rescore(results: dict, rows: list[tuple[int, dict]], run_dir: Path) -> tuple[list[dict], dict]:
    """Score every prediction line again; returns the scored rows and the gold data per benchmark."""
    gold = _gold(results, run_dir)
    bench_names = [b["name"] for b in results["benchmarks"]]
    seeds = results.get("config", {}).get("seeds") or [0]
    pred = run_dir / "predictions.jsonl"
    seen, out = set(), []
    for n, r in rows:
        bname = r.get("benchmark")
        if bname is None:
            if len(bench_names) != 1:
                raise DataError("line has no 'benchmark' and the run has several", pred, n)
            bname = bench_names[0]
        if bname not in gold:
            raise DataError(f"benchmark {bname!r} is not one of this run's ({', '.join(bench_names)})", pred, n)
        key = (bname, r.get("seed", seeds[0]), r.get("strategy", EXTERNAL), r["id"])
        if key in seen:
            raise DataError(f"duplicate prediction for question {r['id']!r} ({key[2]}, seed {key[1]})", pred, n)
        seen.add(key)
        g = gold[bname]
        if g["examples"] is not None:
            ex = g["examples"].get(r["id"])
            if ex is None:
                raise DataError(f"question id {r['id']!r} is not in benchmark {bname!r}", pred, n)
            question, answers, doc_ids = ex.input, list(ex.answers), list(ex.doc_ids)
        else:
            if not isinstance(r.get("answers"), list):
                raise DataError("no gold answers: the benchmark is unavailable and the line has no 'answers'", pred, n)
            question, answers, doc_ids = r.get("question", ""), r["answers"], r.get("doc_ids", [])
        trace = r.get("trace") or {}
        s = metrics.score(r["output"], answers, question, g["task"], trace)  # trace: multiple choice's acc_norm
        ranked = trace.get("retrieved_doc_ids")
        gold_hit = None
        if ranked is not None and doc_ids:
            gold_hit = float(bool(set(ranked) & set(doc_ids)))
        sources = [{"id": str(d), "title": g["titles"].get(str(d), ""), "gold": str(d) in doc_ids}
                   for d in (ranked if isinstance(ranked, list) else [])]
        out.append({**r, "benchmark": bname, "seed": key[1], "strategy": key[2], "question": question,
                    "answers": answers, "doc_ids": doc_ids, **s, "gold_retrieved": gold_hit, "line": n,
                    "sources": sources})
    return out, gold


def _retrieval(rows: list[dict], primary: str) -> dict | None:
    ranked = [(r["trace"]["retrieved_doc_ids"], r) for r in rows
              if (r.get("trace") or {}).get("retrieved_doc_ids") is not None and r["doc_ids"]]
    if not ranked:
        return None
    kmax = max(len(x) for x, _ in ranked)
    recall = {f"recall@{k}": sum(bool(set(x[:k]) & set(r["doc_ids"])) for x, r in ranked) / len(ranked)
              for k in range(1, kmax + 1)}
    hit = [r[primary] for x, r in ranked if set(x) & set(r["doc_ids"])]
    miss = [r[primary] for x, r in ranked if not set(x) & set(r["doc_ids"])]
    return {"recall": recall, "n": len(ranked),
            "acc_gold_retrieved": sum(hit) / len(hit) if hit else None, "n_gold_retrieved": len(hit),
            "acc_gold_missed": sum(miss) / len(miss) if miss else None, "n_gold_missed": len(miss)}


def _latency(rows: list[dict]) -> dict | None:
    us = [r["usage"] for r in rows if isinstance(r.get("usage"), dict) and "latency_seconds" in r["usage"]]
    if not us:
        return None
    lat = [u["latency_seconds"] for u in us]
    ret = [u.get("retrieval_seconds", 0.0) for u in us]
    gen = [a - b for a, b in zip(lat, ret)]
    return {"p50": metrics.percentile(lat, 50), "p95": metrics.percentile(lat, 95),
            "retrieval_p50": metrics.percentile(ret, 50), "retrieval_p95": metrics.percentile(ret, 95),
            "generation_p50": metrics.percentile(gen, 50), "generation_p95": metrics.percentile(gen, 95)}


def decision_config(results: dict, decision: dict | None = None) -> DecisionConfig:
    """The run's recorded `decision:` block with `decision` (CLI flags) over it, validated."""
    return DecisionConfig.from_dict({**((results.get("config") or {}).get("decision") or {}), **(decision or {})})


def analyze(run_dir: Path, prices_path=None, decision: dict | None = None) -> tuple[dict, list[dict]]:
    """Recompute the run's metrics, statistics, costs and recommendation.

    Returns results (cells' metrics updated in place, an `analysis` section added) and scored rows.
    decision: overrides of the run's recorded `decision` settings (CLI flags).
    analysis: primary_metric {benchmark: metric}; decision (every input, defaults filled in); prices (price
    file, the machine the run's timings stand for, hosted prices and the strategies they apply to);
    benchmarks {benchmark: {seed: comparisons, strategies {name: retrieval, latency}, gold_note}};
    decisions {benchmark: verdicts.Decision.to_dict(), pooled over seeds}."""
    results, raw = read_run(run_dir)
    dc = decision_config(results, decision)  # bad settings fail before any scoring
    rows, gold = rescore(results, raw, run_dir)
    table = serving.load_price_table(prices_path)
    machine = table.measured_on(results.get("environment"), dc.measured_on,
                                (results.get("config") or {}).get("usd_per_hour"))
    present = set((r["benchmark"], r["seed"], r["strategy"]) for r in rows)
    # a cell an earlier rebuild made for lines since removed from predictions.jsonl goes with them
    results["cells"] = [c for c in results["cells"] if not str(c.get("source", "")).startswith("predictions.jsonl only")
                        or (c["benchmark"], c.get("seed"), c["strategy"]) in present]
    cells = results["cells"]
    for (b, seed, s) in dict.fromkeys((r["benchmark"], r["seed"], r["strategy"]) for r in rows):
        if not any(c["benchmark"] == b and c.get("seed") == seed and c["strategy"] == s for c in cells):
            cells.append({"strategy": s, "benchmark": b, "seed": seed, "status": "ok", "error": None,
                          "config": {}, "source": "predictions.jsonl only (no cost or latency record)"})
    analysis = {"primary_metric": {}, "benchmarks": {}, "decisions": {}, "decision": _plain(dc),
                "prices": {"source": table.source, "machine": _plain(machine), "hosted": {}}}
    for b in results["benchmarks"]:
        task = gold[b["name"]]["task"]
        primary = metrics.primary_metric(task)
        analysis["primary_metric"][b["name"]] = primary
        per_seed = {}
        for seed in dict.fromkeys(c.get("seed") for c in cells if c["benchmark"] == b["name"]):
            bcells = [c for c in cells if c["benchmark"] == b["name"] and c.get("seed") == seed]
            scores, diag = {}, {}
            for c in bcells:
                mine = [r for r in rows
                        if r["benchmark"] == b["name"] and r["seed"] == seed and r["strategy"] == c["strategy"]]
                if c["status"] != "ok" or not mine:
                    continue
                c["metrics"] = {m: metrics.bootstrap_ci([r[m] for r in mine if m in r])
                                for m in metrics.metric_names(task)}
                scores[c["strategy"]] = {r["id"]: r for r in mine}
                ret, lat = _retrieval(mine, primary), _latency(mine)
                if ret:
                    c["retrieval"] = ret["recall"]
                diag[c["strategy"]] = {"retrieval": ret, "latency": lat}
            per_seed[str(seed)] = {"comparisons": stats.comparisons(scores, primary), "strategies": diag,
                                   "gold_note": gold[b["name"]]["note"]}
        analysis["benchmarks"][b["name"]] = per_seed
        d = verdicts.decide(results, rows, b["name"], primary, table, dc, metric=metric_label(primary))
        dd = d.to_dict()
        for n, c in d.costs.items():  # each monthly figure in words, with its inputs
            if c is not None:
                dd["costs"][n]["describe"] = serving.describe(c)
        analysis["decisions"][b["name"]] = dd
        analysis["prices"]["hosted_for"] = sorted({*analysis["prices"].get("hosted_for", []), *d.hosted_for})
        analysis["prices"]["hosted"].update({label: _plain(h) for label, h in d.hosted.items()})  # by model label
    results["analysis"] = analysis
    return results, rows


def _plain(obj):
    import dataclasses

    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj
