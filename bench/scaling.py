"""Scaling: wall time of indexing (embedding + FAISS build of 1x, 2x, 4x chunks of the corpus) and
of evaluation (zero-shot answering and scoring of 1x, 2x, 4x test questions). The slope of
log(time) against log(size) says how time grows: 1.0 is linear; well above 1 would mean some
step is quadratic. Sizes run in turn within each repetition (1x, 2x, 4x, 1x, ...).
"""
from __future__ import annotations

from .common import Options, build_chunks, embed_index, load, timed
from .stats import loglog_slope, summary

FACTORS = (1, 2, 4)


def measure(opts: Options) -> dict:
    from harness.analysis import metrics
    from harness.data.chunks import chunk_documents
    from harness.methods.strategy import PrepareContext
    from strategies.rag import RagConfig
    from strategies.zero_shot import ZeroShot, ZeroShotConfig

    rt, bench = load(opts)
    c = RagConfig()
    chunks = chunk_documents(bench.documents, c.chunk_words, c.chunk_overlap)
    test = bench.split("test")
    n_chunks = min(opts.n(64, 2), len(chunks) // 4)
    n_questions = min(opts.n(16, 2), len(test) // 4)
    index = embed_index(c.embedder, rt.device)
    strat = ZeroShot(ZeroShotConfig())
    strat.prepare(PrepareContext(benchmark=bench, runtime=rt, workdir=None, progress=False))
    build_chunks(index, chunks[:4])  # warm-up
    strat.answer(test[:2])

    def evaluate(examples):
        preds = strat.answer(examples)
        return [metrics.score(p.output, e.answers, e.input, e.task) for p, e in zip(preds, examples)]

    runs = {"indexing": {f: [] for f in FACTORS}, "evaluation": {f: [] for f in FACTORS}}
    for _ in range(opts.reps):
        for f in FACTORS:
            runs["indexing"][f].append(timed(lambda: build_chunks(index, chunks[: f * n_chunks]), rt.device)[0])
            runs["evaluation"][f].append(timed(lambda: evaluate(test[: f * n_questions]), rt.device)[0])
    out = {}
    for stage, base in (("indexing", n_chunks), ("evaluation", n_questions)):
        med = {f: summary(v)["median"] for f, v in runs[stage].items()}
        out[stage] = {"unit": "chunks" if stage == "indexing" else "questions",
                      "sizes": [f * base for f in FACTORS], "seconds": [runs[stage][f] for f in FACTORS],
                      "slope": loglog_slope([f * base for f in FACTORS], [med[f] for f in FACTORS])}
    return out
