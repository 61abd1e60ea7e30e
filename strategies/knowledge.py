from dataclasses import dataclass

from harness.api import ConfigError, qa_pairs, strategy
from strategies.lora import LoraAdapter, LoraConfig


@dataclass(frozen=True)
class KnowledgeConfig(LoraConfig):
    piece_tokens: int = 256   # documents are cut into pieces of this many tokens for next-token training
    then_qa: bool = True      # follow with supervised question/answer tuning (Ovadia et al. 2024's setting)

    def __post_init__(self):
        super().__post_init__()
        if self.piece_tokens < 16:
            raise ConfigError(f"knowledge.piece_tokens must be >= 16, got {self.piece_tokens}")


def document_pieces(ctx, piece_tokens: int):
    """(no prompt, document tokens) pairs: plain next-token loss over the whole corpus."""
    tok = ctx.runtime.tokenizer
    pairs = []
    for doc in ctx.benchmark.documents:
        text = f"{doc.title}\n\n{doc.text}" if doc.title else doc.text
        ids = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        pairs += [([], ids[i : i + piece_tokens]) for i in range(0, len(ids), piece_tokens)]
    return pairs


@strategy("knowledge", config=KnowledgeConfig)
class KnowledgeInjection(LoraAdapter):
    """Knowledge injection: continued pre-training (LoRA) on the documents, then QA tuning; closed-book."""

    def phases(self, ctx):
        phases = [("documents", document_pieces(ctx, self.config.piece_tokens))]
        if self.config.then_qa:
            phases.append((ctx.benchmark.name, qa_pairs(ctx, ctx.train_examples())))
        return phases
