import random
from dataclasses import dataclass

from harness.api import ConfigError, Prompter, chunk_documents, doc_matches, show_choices, strategy
from strategies.lora_rag import LoraRag, LoraRagConfig


@dataclass(frozen=True)
class RaftConfig(LoraRagConfig):
    distractors: int = 2      # other chunks beside the gold one in each training context
    p_gold: float = 0.8       # share of training contexts that hold the gold chunk (RAFT's P; the rest teach
                              # the model to answer when retrieval missed)

    def __post_init__(self):
        super().__post_init__()
        if self.distractors < 0 or not 0 <= self.p_gold <= 1:
            raise ConfigError("raft.distractors must be >= 0 and raft.p_gold in [0, 1]")


@strategy("raft", config=RaftConfig)
class Raft(LoraRag):
    """RAFT (Zhang et al. 2024): LoRA tuned on questions with gold and distractor chunks; answers with RAG."""

    def phases(self, ctx):
        c = self.config
        chunks = chunk_documents(ctx.benchmark.documents, c.chunk_words, c.chunk_overlap)
        by_doc = {}
        for ch in chunks:
            by_doc.setdefault(ch.doc_id, []).append(ch)
        rng = random.Random(ctx.seed)
        prompter = Prompter.for_benchmark(ctx.benchmark)
        rt = ctx.runtime
        end = rt.tokenizer.get_vocab().get("<|im_end|>", rt.tokenizer.eos_token_id)
        pairs, with_gold = [], 0
        for ex in ctx.train_examples():
            # a gold id may name a whole file ("manual"): its parts' chunks ("manual#p3") are gold
            gold = [ch for d in ex.doc_ids for i in by_doc if doc_matches(i, d) for ch in by_doc[i]]
            # the gold chunk is the one that holds the answer, when one does
            gold = [ch for ch in gold if ex.answers[0].lower() in ch.text.lower()][:1] or gold[:1]
            others = [ch for ch in rng.sample(chunks, min(len(chunks), c.distractors + 2))
                      if not any(doc_matches(ch.doc_id, d) for d in ex.doc_ids)][: c.distractors]
            use_gold = bool(gold) and rng.random() < c.p_gold
            context = (gold if use_gold else []) + others
            with_gold += use_gold
            rng.shuffle(context)
            prompt = rt.encode_chat(show_choices(prompter.with_context(ex.input, [ch.text for ch in context]), ex))
            target = rt.tokenizer(ex.answers[0], add_special_tokens=False)["input_ids"] + [end]
            pairs.append((prompt, target))
        self.with_gold = with_gold
        return [(ctx.benchmark.name, pairs)]

    def prepare(self, ctx) -> dict:
        details = super().prepare(ctx)
        return {**details, "contexts_with_gold": self.with_gold}
