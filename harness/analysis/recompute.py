"""Everything a report states, recomputed from a run's records: scores, statistics, costs, decision.

Costs and the recommendation come from the serving-cost model (analysis/serving.py) and the decision
rules (analysis/verdicts.py), one decision per benchmark pooled over the run's seeds.

Predictions are rescored against the benchmark's gold answers (loaded by the name or path the run
used), so a scoring change or an edited or external predictions file (only `id` and `output` are
required per line) needs no model run. Nothing here imports torch or loads a model.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from harness.analysis import metrics, serving, stats, trust, verdicts
from harness.analysis.curves import rescore_cell
from harness.analysis.verdicts import DecisionConfig
from harness.core.errors import DataError, HarnessError
from harness.core.paths import CORPORA_DIR, shown
from harness.core.records import NotStrictJSON, loads_strict, nonfinite_line, regular_file
from harness.data.docids import any_match
from harness.data.tasks import DEFAULT_TASK, TASK_TYPES

EXTERNAL = "external"  # strategy name for prediction lines that do not say which strategy made them
# how the report's sentences name a headline metric (the registry's labels are column headings)
LABELS = {"f1": "token F1", "exact_match": "accuracy", "semantic": "semantic match rate", "judge": "judge score"}


def metric_label(name: str) -> str:
    """"token F1", "accuracy", or the registered metric's label."""
    return LABELS.get(name) or metrics.get_metric(name).label


def read_run(path, predictions: bool = True, require_predictions: bool = False) -> tuple[dict, list[tuple[int, dict]]]:
    """A run folder (or its results.json): its results, and predictions.jsonl's lines with their line
    numbers. The one reader of run records: report, compare, gate and --resume all use it, so a bad
    record is one error naming the file and line wherever it is read. Records are strict JSON (no NaN
    or Infinity), regular files, valid Unicode, and every field a reader relies on has its type."""
    path = Path(path)
    run_dir = path.parent if path.name == "results.json" and path.is_file() else path
    res = run_dir / "results.json"
    try:
        regular_file(res, "results.json")
        text = res.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HarnessError(f"{path}: no results.json here; give a run folder or its results.json") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 ({exc.reason})", res) from None
    except NotADirectoryError:
        raise HarnessError(f"{path}: not a run folder (no results.json here)") from None
    except OSError as exc:
        raise HarnessError(f"{res}: cannot read it ({exc.strerror or exc})") from None
    results = _strict_json(text, res)
    _check_results(results, res)
    rows = []
    pred = run_dir / "predictions.jsonl"
    exists = pred.exists() or pred.is_symlink()
    if predictions and not exists and require_predictions:
        raise DataError("predictions.jsonl is missing beside results.json; per-question scores are needed", pred)
    if predictions and exists:
        try:
            regular_file(pred, "predictions.jsonl")
            text = pred.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"not UTF-8 ({exc.reason})", pred) from None
        except OSError as exc:
            raise HarnessError(f"{pred}: cannot read it ({exc.strerror or exc})") from None
        for n, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            obj = _strict_json(line, pred, n)
            if not isinstance(obj, dict) or not isinstance(obj.get("id"), str) \
                    or not isinstance(obj.get("output"), str):
                raise DataError("each line needs a string 'id' and a string 'output'", pred, n)
            _check_row(obj, pred, n)
            rows.append((n, obj))
    return results, rows


def _strict_json(text: str, path: Path, line: int | None = None):
    """Parsed JSON; NaN / Infinity (Python's json accepts them, JSON does not) and lone surrogates
    (they cannot be written back as UTF-8) are DataErrors naming the file and line."""
    try:
        obj = loads_strict(text)
    except NotStrictJSON as exc:
        raise DataError(f"{exc}: records hold only finite numbers", path, line or nonfinite_line(text)) from None
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON ({exc.msg})", path, line or exc.lineno) from None
    except RecursionError:
        raise DataError("not valid JSON (nested too deeply)", path, line) from None
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise DataError("holds a lone surrogate escape (\\ud800-\\udfff), which is not text", path, line) from None
    return obj


def _check_results(results, res: Path) -> None:
    """The fields of results.json that the report, compare, gate and --resume read, with their types."""
    if not isinstance(results, dict) or not isinstance(results.get("cells"), list) \
            or not isinstance(results.get("benchmarks"), list):
        raise DataError("not a run record (needs 'cells' and 'benchmarks')", res)
    for key in ("config", "run", "pricing", "environment", "model"):
        if key in results and not isinstance(results[key], dict):
            raise DataError(f"{key!r} must be an object", res)
    cfg = results.get("config", {})
    if "benchmarks" in cfg and not _list_of(cfg["benchmarks"], str):
        raise DataError("config.benchmarks must be a list of names or paths", res)
    if "seeds" in cfg and not _list_of(cfg["seeds"], int):
        raise DataError("config.seeds must be a list of integers", res)
    names = []
    for i, b in enumerate(results["benchmarks"]):
        if not isinstance(b, dict) or not isinstance(b.get("name"), str) or not b["name"]:
            raise DataError(f"benchmarks[{i}] needs a 'name'", res)
        for key in ("data_sha256", "path", "task"):
            if b.get(key) is not None and not isinstance(b[key], str):
                raise DataError(f"benchmarks[{i}].{key} must be a string", res)
        names.append(b["name"])
    if len(set(names)) < len(names):
        raise DataError("two benchmarks have one name", res)
    for i, c in enumerate(results["cells"]):
        if not isinstance(c, dict):
            raise DataError(f"cells[{i}] must be an object", res)
        for key, kind in (("strategy", str), ("benchmark", str), ("status", str)):
            if not isinstance(c.get(key), kind) or not c[key]:
                raise DataError(f"cells[{i}] needs a string {key!r}", res)
        if not _int(c.get("seed")):
            raise DataError(f"cells[{i}].seed must be an integer", res)
        if c.get("error") is not None and not isinstance(c["error"], str):
            raise DataError(f"cells[{i}].error must be a string", res)
    price = results.get("pricing", {}).get("usd_per_hour", 0.0)
    if not _number(price):
        raise DataError("pricing.usd_per_hour must be a number >= 0", res)


USAGE_FIELDS = ("prompt_tokens", "output_tokens", "seconds", "retrieval_seconds", "latency_seconds")


def _check_row(r: dict, pred: Path, n: int) -> None:
    """The optional fields of a prediction line, when present, have the types scoring relies on."""
    for key in ("strategy", "benchmark", "question"):
        if key in r and (not isinstance(r[key], str) or (key != "question" and not r[key])):
            raise DataError(f"{key!r} must be a non-empty string", pred, n)
    if "seed" in r and not _int(r["seed"]):
        raise DataError("'seed' must be an integer", pred, n)
    for key in ("answers", "doc_ids"):
        if key in r and not _list_of(r[key], str):
            raise DataError(f"{key!r} must be a list of strings", pred, n)
    usage = r.get("usage")
    if usage is not None:
        if not isinstance(usage, dict):
            raise DataError("'usage' must be an object", pred, n)
        for key in USAGE_FIELDS:
            if key in usage and not _number(usage[key]):
                raise DataError(f"usage.{key} must be a number >= 0, got {usage[key]!r}", pred, n)
    trace = r.get("trace")
    if trace is not None:
        if not isinstance(trace, dict):
            raise DataError("'trace' must be an object", pred, n)
        if trace.get("retrieved_doc_ids") is not None and not _list_of(trace["retrieved_doc_ids"], str):
            raise DataError("trace.retrieved_doc_ids must be a list of strings", pred, n)
        if "choice_norm" in trace and not isinstance(trace["choice_norm"], str):
            raise DataError("trace.choice_norm must be a string", pred, n)


def _int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x >= 0


def _list_of(x, kind) -> bool:
    return isinstance(x, list) and all(isinstance(v, kind) and not isinstance(v, bool) for v in x)


def _candidates(ref: str, b: dict) -> list[Path | str]:
    """Where a run's benchmark may be, most specific first: the folder the run recorded, the name or
    path it was given (a folder in the working directory and the built-in of that name are both
    tried, so a folder that merely shares a built-in's name is never taken on trust)."""
    from harness.data.benchmark import builtin_benchmarks

    out: list[Path | str] = []
    if b.get("path"):
        recorded = Path(b["path"])
        if recorded.parent.name == "corpora" and recorded.name in builtin_benchmarks():
            # a built-in as another checkout of the harness recorded it (a committed example made elsewhere):
            # this checkout's copy first, so the report names and reads the same folder on every machine
            out.append(CORPORA_DIR / recorded.name)
        out.append(recorded)
    p = Path(ref)
    if p.is_dir():
        out.append(p.resolve())
    if ref in builtin_benchmarks():
        out.append(CORPORA_DIR / ref)
    elif not p.is_dir():
        out.append(ref)  # load_benchmark names the problem (unknown name, missing folder)
    seen, unique = set(), []
    for c in out:
        k = str(Path(c).resolve()) if isinstance(c, Path) else c
        if k not in seen:
            seen.add(k)
            unique.append(c)
    return unique


def _gold(results: dict, run_dir: Path, verified: bool = False) -> dict[str, dict]:
    """benchmark name -> {"task", "examples": id -> Example or None, "note", "path", "verified"},
    loaded without a model. The benchmark's data must hash to what the run recorded: gold answers
    edited since the run, or another folder of the same name, are an error (exit 2), never scored
    against. `verified`: the gold answers must come from the benchmark itself, with the data hash
    recorded and matching (the gate); otherwise a benchmark that cannot be loaded falls back to the
    answers in predictions.jsonl, with a note, but only when it is nowhere to be found: a folder that is
    there and does not load is an error."""
    from harness.data.benchmark import load_benchmark

    config = results.get("config", {})
    names = config.get("benchmarks") or []
    out = {}
    res = run_dir / "results.json"
    for i, b in enumerate(results["benchmarks"]):
        ref = names[i] if i < len(names) else b["name"]
        recorded = b.get("data_sha256")
        if verified and not recorded:
            raise DataError(f"benchmark {b['name']!r} has no recorded data hash (benchmarks[{i}].data_sha256): "
                            "its gold answers cannot be confirmed", res)
        loaded, errors, broken = [], [], []
        for cand in _candidates(ref, b):
            try:
                bench = load_benchmark(str(cand), split_seed=config.get("split_seed"),
                                       test_ratio=config.get("test_ratio"), columns=config.get("columns"))
            except HarnessError as exc:
                errors.append(str(exc).splitlines()[0])
                if isinstance(cand, Path) and cand.exists():
                    lines = str(exc).splitlines()  # a corpus's first problem, or the one line
                    broken.append((cand, lines[min(1, len(lines) - 1)].strip()))
                continue
            loaded.append(bench)
            if recorded is None or bench.meta.get("data_sha256") == recorded:
                break
        else:
            bench = None
        if bench is not None:
            out[b["name"]] = {"task": bench.task, "examples": {e.id: e for e in bench.examples},
                              "titles": {d.id: d.title for d in bench.documents},
                              "path": bench.meta.get("path"), "data_sha256": bench.meta.get("data_sha256"),
                              "verified": recorded is not None,
                              "note": None if recorded else f"the run recorded no data hash for {b['name']!r}: "
                                                            f"scored against {bench.meta.get('path')} unverified"}
        elif loaded:
            where = "; ".join(f"{x.meta.get('path')} has sha256 {str(x.meta.get('data_sha256'))[:12]}" for x in loaded)
            raise DataError(f"benchmark {b['name']!r} is not the data the run answered (recorded sha256 "
                            f"{recorded[:12]}; {where}): its questions or gold answers changed since the run, or "
                            "another folder has its name. Restore the data, or rerun", res)
        elif broken:  # there, but it does not load: changed since the run, never a reason to trust the lines
            raise DataError(f"benchmark {b['name']!r} at {broken[0][0]} does not load ({broken[0][1]}), so its "
                            "gold answers cannot be checked against the ones the run was scored on", res)
        elif verified:
            raise DataError(f"benchmark {b['name']!r} ({ref}) could not be loaded ({errors[0] if errors else '?'}): "
                            "the gate scores against the benchmark's own gold answers", res)
        else:
            out[b["name"]] = {"task": b.get("task", DEFAULT_TASK), "examples": None, "path": None, "titles": {},
                              "data_sha256": None, "verified": False,
                              "note": f"benchmark {ref!r} could not be loaded ({errors[0] if errors else '?'}); gold "
                                      "answers taken from predictions.jsonl"}
        if "task" in b and b["task"] not in TASK_TYPES:
            raise DataError(f"benchmark {b['name']!r}: unknown task type {b['task']!r}", res)
    return out


def rescore(results: dict, rows: list[tuple[int, dict]], run_dir: Path,
            verified: bool = False) -> tuple[list[dict], dict]:
    """Score every prediction line again; returns the scored rows and the gold data per benchmark.
    Each benchmark entry of `results` gets `gold`: the folder scored against, its data hash, and
    whether that hash is the one the run recorded. Stored per-line scores are never read.
    `verified`: see _gold (the gate's standard)."""
    gold = _gold(results, run_dir, verified)
    for b in results["benchmarks"]:
        g = gold[b["name"]]
        b["gold"] = {"path": shown(g["path"]) if g["path"] else None, "data_sha256": g["data_sha256"],
                     "verified": g["verified"]}
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
        bad = [k for k, v in s.items() if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            raise DataError(f"scoring gave a non-finite {bad[0]}: refused", pred, n)
        ranked = trace.get("retrieved_doc_ids")
        gold_hit = None
        if ranked is not None and doc_ids:
            gold_hit = float(any_match(ranked, doc_ids))
        sources = [{"id": str(d), "title": g["titles"].get(str(d), ""), "gold": any_match([str(d)], doc_ids)}
                   for d in (ranked if isinstance(ranked, list) else [])]
        out.append({**r, "benchmark": bname, "seed": key[1], "strategy": key[2], "question": question,
                    "answers": answers, "doc_ids": doc_ids, **s, "gold_retrieved": gold_hit, "line": n,
                    "sources": sources})
    present = {(r["benchmark"], r["seed"], r["strategy"]) for r in out}
    for c in results["cells"]:
        if c["status"] == "ok" and not str(c.get("source", "")).startswith("predictions.jsonl only") \
                and (c["benchmark"], c["seed"], c["strategy"]) not in present:
            where = "predictions.jsonl has no line for it" if pred.exists() else "predictions.jsonl is missing"
            raise DataError(f"results.json records {c['strategy']} (seed {c['seed']}) on {c['benchmark']} as "
                            f"answered, but {where}: its scores cannot be recomputed", pred)
    return out, gold


def _retrieval(rows: list[dict], primary: str) -> dict | None:
    ranked = [(r["trace"]["retrieved_doc_ids"], r) for r in rows
              if (r.get("trace") or {}).get("retrieved_doc_ids") is not None and r["doc_ids"]]
    if not ranked:
        return None
    kmax = max(len(x) for x, _ in ranked)
    recall = {f"recall@{k}": sum(any_match(x[:k], r["doc_ids"]) for x, r in ranked) / len(ranked)
              for k in range(1, kmax + 1)}
    hit = [r[primary] for x, r in ranked if any_match(x, r["doc_ids"])]
    miss = [r[primary] for x, r in ranked if not any_match(x, r["doc_ids"])]
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


def headline(results: dict, bench: dict, task: str, rows: list[dict],
             metric: str | None = None) -> tuple[str, str | None]:
    """A benchmark's headline metric and a note when it is not the one asked for: `metric` (report
    --metric), else the run's `metric`, else the benchmark's own (benchmark.json), else its task
    type's. A model-based metric is only read from predictions.jsonl (reports never run a model): asked
    for explicitly and missing, it is an error; as a default and missing, token F1 stands in."""
    asked = metric or (results.get("config") or {}).get("metric")
    name = asked or bench.get("metric") or metrics.primary_metric(task)
    try:
        m = metrics.get_metric(name)
    except KeyError as exc:
        raise HarnessError(str(exc).strip("'\"")) from None
    if not m.headline or not m.applies_to(task):
        raise HarnessError(f"metric {name!r} cannot head benchmark {bench['name']!r} (task {task})")
    if m.stored and not any(name in r for r in rows):
        if asked:
            raise HarnessError(
                f"benchmark {bench['name']!r}: predictions.jsonl has no {name!r} values. {m.label} is computed by a "
                f"model during `harness run` (reports never run a model): rerun the same config with --metrics {name}; "
                "its answers come from the cache and only the judging runs")
        return "f1", (f"Headline {m.label} was not computed in this run (no values in predictions.jsonl); token F1 "
                      "stands in. `harness run --metrics " + name + "` computes it.")
    return name, None


def analyze(run_dir: Path, prices_path=None, decision: dict | None = None,
            metric: str | None = None, labels_path=None) -> tuple[dict, list[dict]]:
    """Recompute the run's metrics, statistics, costs and recommendation.

    Returns results (cells' metrics updated in place, an `analysis` section added) and scored rows.
    decision: overrides of the run's recorded `decision` settings (CLI flags); metric: the headline
    metric (`harness report --metric`; default: the run's). Model-based metrics (semantic, judge,
    faithfulness) are taken as stored in predictions.jsonl, never recomputed. labels_path: people's labels
    of answers (trust.read_labels; `harness report --labels`), held against every metric per seed.
    analysis: primary_metric {benchmark: metric}; headline_notes {benchmark: note}; decision (every input,
    defaults filled in); prices (price file, the machine the run's timings stand for, hosted prices and the
    strategies they apply to); benchmarks {benchmark: {seed: comparisons, strategies {name: retrieval,
    latency}, gold_note, trust}}; decisions {benchmark: verdicts.Decision.to_dict(), pooled over seeds}."""
    results, raw = read_run(run_dir)
    dc = decision_config(results, decision)  # bad settings fail before any scoring
    labels = trust.read_labels(labels_path) if labels_path else None
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
    analysis = {"primary_metric": {}, "benchmarks": {}, "decisions": {}, "decision": _plain(dc), "headline_notes": {},
                "prices": {"source": table.source, "machine": _plain(machine), "hosted": {}}}
    for b in results["benchmarks"]:
        task = gold[b["name"]]["task"]
        primary, note = headline(results, b, task, [r for r in rows if r["benchmark"] == b["name"]], metric)
        analysis["primary_metric"][b["name"]] = primary
        if note:
            analysis["headline_notes"][b["name"]] = note
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
                                for m in metrics.metric_names(task) if any(m in r for r in mine)}
                rescore_cell(c, gold[b["name"]]["examples"], primary)  # sweep and learning-curve points
                if primary not in c["metrics"]:  # a model-based headline this strategy has no values of
                    continue
                scores[c["strategy"]] = {r["id"]: r for r in mine if primary in r}
                ret, lat = _retrieval(mine, primary), _latency(mine)
                if ret:
                    c["retrieval"] = ret["recall"]
                diag[c["strategy"]] = {"retrieval": ret, "latency": lat}
            per_seed[str(seed)] = {"comparisons": stats.comparisons(scores, primary), "strategies": diag,
                                   "gold_note": gold[b["name"]]["note"],
                                   "trust": trust.figures([r for r in rows if r["benchmark"] == b["name"]
                                                           and r["seed"] == seed], trust.JUDGED)}
            if labels:
                per_seed[str(seed)]["labels"] = {
                    "source": Path(labels_path).name, "count": len(labels),
                    **trust.against_labels([r for r in rows if r["benchmark"] == b["name"] and r["seed"] == seed],
                                           labels)}
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
