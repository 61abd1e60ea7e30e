import time
from dataclasses import dataclass
from typing import Sequence

from harness.api import (
    DEFAULT_CHUNK_OVERLAP,
    DEFAULT_CHUNK_WORDS,
    DEFAULT_EMBEDDER,
    ConfigError,
    Example,
    Index,
    Prediction,
    PrepareContext,
    Prompter,
    StrategyBase,
    answer_prompts,
    code_version,
    count_chunks,
    documents_hash,
    embedder_path,
    library_versions,
    recall_at,
    stage,
    strategy,
)


@dataclass(frozen=True)
class RagConfig:
    k: int = 3                 # more context: better recall, linearly more prompt tokens (prefill dominates)
    chunk_words: int = DEFAULT_CHUNK_WORDS      # ~130 tokens; harness/data/chunks.py says why
    chunk_overlap: int = DEFAULT_CHUNK_OVERLAP
    embedder: str = DEFAULT_EMBEDDER

    def __post_init__(self):
        if self.k < 1:
            raise ConfigError(f"rag.k must be >= 1, got {self.k}")
        if self.chunk_words < 16:
            raise ConfigError(f"rag.chunk_words must be >= 16, got {self.chunk_words}")
        if not 0 <= self.chunk_overlap < self.chunk_words:
            raise ConfigError("rag.chunk_overlap must be >= 0 and smaller than rag.chunk_words")


class TopK:
    """The Retriever of the contract: the top k chunks of an Index."""

    def __init__(self, index: Index, k: int):
        self.index, self.k = index, k

    def search(self, queries):
        return self.index.search(queries, self.k)


@strategy("rag", config=RagConfig)
class Rag(StrategyBase):
    """Retrieve the top-k chunks of the benchmark's documents (MiniLM + FAISS) and answer from them."""

    @classmethod
    def check(cls, name: str, c: RagConfig, benchmark) -> None:
        """Run before the model loads (chunking is cheap): k above the chunk count is a config error."""
        n = count_chunks(benchmark.documents, c.chunk_words, c.chunk_overlap)
        if c.k > n:
            raise ConfigError(f"{name}.k={c.k} is larger than the number of chunks ({n}) of benchmark "
                              f"{benchmark.name!r} with chunk_words={c.chunk_words}")

    def prepare(self, ctx: PrepareContext) -> dict:
        self.ctx = ctx
        self.prompter = Prompter.for_benchmark(ctx.benchmark)
        c = self.config
        docs = ctx.benchmark.documents
        self.check(self.name, c, ctx.benchmark)
        n_chunks = count_chunks(docs, c.chunk_words, c.chunk_overlap)
        self.index = Index(c.embedder, device=ctx.runtime.device)
        self.retriever = TopK(self.index, c.k)

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
        self.artifact_path = folder
        return {"chunks": n_chunks, "documents": len(docs),
                "artifact_bytes": size, "artifact": f"faiss {self.index.kind}", "embedder": c.embedder,
                "index": {"type": self.index.kind, "chunk_words": c.chunk_words,
                          "chunk_overlap": c.chunk_overlap, "embedder_sha256": parts["embedder_sha256"],
                          "path": str(folder), "cached": hit, **meta}}

    def answer(self, examples: Sequence[Example], model=None, desc: str = "answering rag") -> list[Prediction]:
        hits, seconds = self.retriever.search([e.input for e in examples])
        msgs, traces = [], []
        for e, chunks in zip(examples, hits):
            msgs.append(self.prompter.with_context(e.input, [c.text for c in chunks]))
            ids = [c.doc_id for c in chunks]
            # the passages themselves, for faithfulness and context recall (about 0.7 KB per 100-word chunk)
            traces.append({"retrieved_doc_ids": ids, "retrieved_texts": [c.text for c in chunks],
                           "gold_retrieved": recall_at(ids, e.doc_ids, len(ids))})
        return answer_prompts(self.ctx, examples, msgs, retrieval_seconds=seconds, traces=traces,
                              model=model, desc=desc)
