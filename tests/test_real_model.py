"""A few checks with the real packaged SmolLM2-135M (converted once from its GGUF, then cached)."""
import json

import pytest

from harness.data.benchmark import load_benchmark
from harness.engine.config import RunConfig
from harness.engine.runner import run

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def runtime():
    from harness.model.runtime import Runtime

    return Runtime("smollm2-135m", device="cpu", progress=False)


def test_reads_the_answer_from_a_gold_paragraph(runtime):
    from harness.methods import prompts

    bench = load_benchmark("squadshifts_nyt")
    docs = {d.id: d.text for d in bench.documents}
    ex = next(e for e in bench.split("test") if e.input == "Who is the president of the European Central Bank?")
    msgs = [prompts.with_context(ex.input, [docs[d] for d in ex.doc_ids]), prompts.closed_book(ex.input)]
    with_ctx, closed = runtime.generate([runtime.encode_chat(m) for m in msgs], max_new_tokens=24)
    assert "Draghi" in with_ctx.text
    assert closed.prompt_tokens < with_ctx.prompt_tokens / 3


def test_default_strategies_on_a_few_questions(tmp_path):
    cfg = RunConfig(strategies=("zero-shot", "rag"), limit=6, device="cpu", out=str(tmp_path / "run"))
    run_dir = run(cfg, progress=False, log=lambda m: None)
    results = json.loads((run_dir / "results.json").read_text())
    cells = {c["strategy"]: c for c in results["cells"]}
    assert all(c["status"] == "ok" for c in cells.values())
    assert results["model"]["gguf_sha256"]
    rag, zs = cells["rag"], cells["zero-shot"]
    assert rag["retrieval"]["recall@3"] >= 0.5  # MiniLM finds most gold paragraphs
    assert rag["answer"]["prompt_tokens_mean"] > 4 * zs["answer"]["prompt_tokens_mean"]
    assert rag["metrics"]["contains"]["mean"] >= zs["metrics"]["contains"]["mean"]
