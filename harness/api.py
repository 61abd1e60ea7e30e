"""The face that strategy files import: everything a strategy is built from, and nothing else.

`strategies/*.py` (and outside packages that add strategies through the entry-point group
`rag_or_finetune.strategies`) import only from here, so the folders behind it can be rearranged
without touching a strategy. A minimal strategy:

    from dataclasses import dataclass
    from harness.api import PrepareContext, Prompter, StrategyBase, answer_prompts, strategy

    @dataclass(frozen=True)
    class EchoConfig:
        pass

    @strategy("echo", config=EchoConfig)
    class Echo(StrategyBase):
        '''Closed-book, like zero-shot (one line: `harness strategies` shows it).'''

        def prepare(self, ctx: PrepareContext) -> dict:
            self.ctx, self.prompter = ctx, Prompter.for_benchmark(ctx.benchmark)
            return {}

        def answer(self, examples):
            return answer_prompts(self.ctx, examples, [self.prompter.closed_book(e.input) for e in examples])
"""
from harness.analysis.metrics import recall_at, score
from harness.cache.hashing import code_version, documents_hash, library_versions
from harness.cache.stages import stage
from harness.core.errors import ConfigError, StrategyFailed
from harness.core.types import Benchmark, Document, Example, Prediction, Usage
from harness.data.benchmark import load_benchmark
from harness.data.chunks import (
    DEFAULT_CHUNK_OVERLAP,
    DEFAULT_CHUNK_WORDS,
    Chunk,
    chunk_documents,
    count_chunks,
)
from harness.data.docids import doc_matches
from harness.methods.finetune import FineTune, PeftFineTune, qa_pairs
from harness.methods.prompts import Prompter, show_choices
from harness.methods.registry import strategy
from harness.methods.retrieval import DEFAULT_EMBEDDER, Index, embedder_path
from harness.methods.strategy import (
    DEFAULT_MAX_NEW_TOKENS,
    PrepareContext,
    Retriever,
    Strategy,
    StrategyBase,
    answer_prompts,
)
from harness.methods.train import check_training_options

__all__ = [
    "DEFAULT_CHUNK_OVERLAP", "DEFAULT_CHUNK_WORDS", "DEFAULT_EMBEDDER", "DEFAULT_MAX_NEW_TOKENS", "Benchmark",
    "Chunk", "ConfigError", "Document", "Example", "FineTune", "Index", "PeftFineTune", "Prediction",
    "PrepareContext", "Prompter", "Retriever", "Strategy", "StrategyBase", "StrategyFailed", "Usage",
    "answer_prompts", "check_training_options", "chunk_documents", "code_version", "count_chunks", "doc_matches",
    "documents_hash", "embedder_path", "library_versions", "load_benchmark", "qa_pairs", "recall_at", "score",
    "show_choices", "stage", "strategy",
]
