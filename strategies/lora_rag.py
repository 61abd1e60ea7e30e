from dataclasses import dataclass
from typing import Sequence

from harness.api import DEFAULT_EMBEDDER, Example, Prediction, strategy
from strategies.lora import LoraAdapter, LoraConfig
from strategies.rag import Rag, RagConfig


@dataclass(frozen=True)
class LoraRagConfig(LoraConfig):
    k: int = RagConfig.k
    chunk_words: int = RagConfig.chunk_words
    chunk_overlap: int = RagConfig.chunk_overlap
    embedder: str = DEFAULT_EMBEDDER


@strategy("lora-rag", config=LoraRagConfig)
class LoraRag(LoraAdapter):
    """FT + RAG: the LoRA model (trained closed-book on the train split) answers with retrieved context."""

    def __init__(self, config: LoraRagConfig):
        super().__init__(config)
        c = config
        self.rag = Rag(RagConfig(k=c.k, chunk_words=c.chunk_words, chunk_overlap=c.chunk_overlap,
                                 embedder=c.embedder))

    @classmethod
    def check(cls, name, config, benchmark) -> None:  # k against the benchmark's chunks, before the model loads
        Rag.check(name, config, benchmark)

    def prepare(self, ctx) -> dict:
        details = super().prepare(ctx)
        index = self.rag.prepare(ctx)
        self.retriever = self.rag.retriever
        return {**details, "artifact_bytes": details["artifact_bytes"] + index["artifact_bytes"],
                "artifact": "adapter + faiss index", "chunks": index["chunks"], "index": index["index"]}

    def answer(self, examples: Sequence[Example]) -> list[Prediction]:
        return self.rag.answer(examples, model=self.model, desc="answering lora-rag")
