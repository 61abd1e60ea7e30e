import time
from dataclasses import dataclass
from typing import Sequence

from harness.cache.hashing import code_version, documents_hash, library_versions
from harness.cache.stages import stage
from harness.core.errors import ConfigError
from harness.core.types import Example, Prediction
from harness.methods import prompts
from harness.methods.registry import strategy
from harness.methods.retrieval import (
    DEFAULT_EMBEDDER,
    Index,
    count_chunks,
    embedder_path,
    recall_at,
)
from harness.methods.strategy import PrepareContext, answer_prompts


@dataclass(frozen=True)
class RagConfig:
    k: int = 3                 # more context: better recall, linearly more prompt tokens (prefill dominates)
    # ~130 tokens a chunk: 3 chunks keep a RAG prompt near 430 tokens. Prefill of those prompts is
    # most of the default run's time (200 x 536 tokens took 378 s with 150-word chunks).
    # MiniLM reads at most 256 word pieces (~190 words); longer chunks would be cut.
    chunk_words: int = 100
    chunk_overlap: int = 20
    embedder: str = DEFAULT_EMBEDDER

    def __post_init__(self):
        if self.k < 1:
            raise ConfigError(f"rag.k must be >= 1, got {self.k}")
        if self.chunk_words < 16:
            raise ConfigError(f"rag.chunk_words must be >= 16, got {self.chunk_words}")
        if not 0 <= self.chunk_overlap < self.chunk_words:
            raise ConfigError("rag.chunk_overlap must be >= 0 and smaller than rag.chunk_words")


@strategy("rag", config=RagConfig)
class Rag:
    """Retrieve the top-k chunks of the benchmark's documents (MiniLM + FAISS) and answer from them."""

    def __init__(self, config: RagConfig):
        self.config = config

    @staticmethod
    def check(name: str, c: RagConfig, benchmark) -> int:
        """Run before the model loads (chunking is cheap): k above the chunk count is a config error."""
        n = count_chunks(benchmark.documents, c.chunk_words, c.chunk_overlap)
        if c.k > n:
            raise ConfigError(f"{name}.k={c.k} is larger than the number of chunks ({n}) of benchmark "
                              f"{benchmark.name!r} with chunk_words={c.chunk_words}")
        return n

    def prepare(self, ctx: PrepareContext) -> dict:
        self.ctx = ctx
        self.prompter = prompts.Prompter.for_benchmark(ctx.benchmark)
        c = self.config
        docs = ctx.benchmark.documents
        n_chunks = self.check(self.name, c, ctx.benchmark)
        self.index = Index(c.embedder, device=ctx.runtime.device)

        def build(folder):
            t0 = time.perf_counter()
            self.index.build(docs, c.chunk_words, c.chunk_overlap, n_chunks=n_chunks, progress=ctx.progress)
            self.index.save(folder / "index.faiss")
            return {"index_seconds": round(time.perf_counter() - t0, 3), "type": self.index.kind}

        # Once per corpus + embedder + chunking: rag, lora-rag and raft share one index.
        parts = {"documents": documents_hash(docs), "embedder": c.embedder,
                 "embedder_sha256": ctx.cache.tree_hash(embedder_path(c.embedder)) if ctx.cache else None,
                 "chunk_words": c.chunk_words, "chunk_overlap": c.chunk_overlap, "device": ctx.runtime.device,
                 "libraries": library_versions(), "code": code_version(Index)}
        folder, meta, hit = stage(ctx, "index", parts, build)
        if hit:
            self.index.load(folder / "index.faiss", docs, c.chunk_words, c.chunk_overlap)
        size = (folder / "index.faiss").stat().st_size
        return {"chunks": n_chunks, "documents": len(docs),
                "artifact_bytes": size, "artifact": f"faiss {self.index.kind}", "embedder": c.embedder,
                "index": {"type": self.index.kind, "chunk_words": c.chunk_words,
                          "chunk_overlap": c.chunk_overlap, "embedder_sha256": parts["embedder_sha256"],
                          "path": str(folder), "cached": hit, **meta}}

    def answer(self, examples: Sequence[Example], model=None, desc: str = "answering rag") -> list[Prediction]:
        hits, seconds = self.index.search([e.input for e in examples], self.config.k)
        msgs, traces = [], []
        for e, chunks in zip(examples, hits):
            msgs.append(self.prompter.with_context(e.input, [c.text for c in chunks]))
            ids = [c.doc_id for c in chunks]
            traces.append({"retrieved_doc_ids": ids,
                           "gold_retrieved": recall_at(ids, e.doc_ids, len(ids))})
        return answer_prompts(self.ctx, examples, msgs, retrieval_seconds=seconds, traces=traces,
                              model=model, desc=desc)
