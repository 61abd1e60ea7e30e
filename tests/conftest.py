"""Shared fixtures: a tiny random-weight Llama model with its own BPE tokenizer, and a tiny corpus.

Nothing is downloaded: the tokenizer is trained here in about a second, the model is random.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a test model.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

DOCS = [
    ("d1", "Harbor City", "The Harbor City bridge was opened in 1932 by mayor Alice Stone. It spans the Gray River."),
    ("d2", "Pine Valley", "Pine Valley grows apples and pears. Its annual fair happens every October since 1950."),
    ("d3", "Orion Labs", "Orion Labs builds small satellites in Denver. Its founder is Raj Patel, an engineer."),
    ("d4", "Lake Mira", "Lake Mira is the deepest lake in the region, with a depth of 310 meters."),
    ("d5", "Blue Note Cafe",
     "The Blue Note Cafe serves jazz every Friday. Its owner, Marta Ruiz, plays the saxophone."),
    ("d6", "Redwood School", "Redwood School has 420 students and was founded by the Miller family in 1898."),
]
QUESTIONS = [
    ("q1", "Who opened the Harbor City bridge?", ["Alice Stone"], "test", ["d1"]),
    ("q2", "When does the Pine Valley fair happen?", ["October", "every October"], "test", ["d2"]),
    ("q3", "Where does Orion Labs build satellites?", ["Denver"], "test", ["d3"]),
    ("q4", "How deep is Lake Mira?", ["310 meters"], "test", ["d4"]),
    ("q5", "What instrument does Marta Ruiz play?", ["saxophone", "the saxophone"], "test", ["d5"]),
    ("q6", "How many students does Redwood School have?", ["420"], "test", ["d6"]),
    ("t1", "Which river does the Harbor City bridge span?", ["Gray River"], "train", ["d1"]),
    ("t2", "What fruit does Pine Valley grow besides apples?", ["pears"], "train", ["d2"]),
    ("t3", "Who founded Orion Labs?", ["Raj Patel"], "train", ["d3"]),
    ("t4", "Which lake is the deepest in the region?", ["Lake Mira"], "train", ["d4"]),
    ("t5", "When does the Blue Note Cafe serve jazz?", ["every Friday", "Friday"], "train", ["d5"]),
    ("t6", "Who founded Redwood School?", ["the Miller family", "Miller family"], "train", ["d6"]),
    ("t7", "In what year was the Harbor City bridge opened?", ["1932"], "train", ["d1"]),
    ("t8", "Since when has the Pine Valley fair happened?", ["1950"], "train", ["d2"]),
    ("t9", "What is the profession of Raj Patel?", ["engineer"], "train", ["d3"]),
    ("t10", "Who owns the Blue Note Cafe?", ["Marta Ruiz"], "train", ["d5"]),
    ("t11", "When was Redwood School founded?", ["1898"], "train", ["d6"]),
    ("t12", "What is the depth of Lake Mira?", ["310 meters"], "train", ["d4"]),
]


def write_corpus(root: Path, docs=DOCS, questions=QUESTIONS) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "documents.jsonl", "w", encoding="utf-8") as f:
        for i, title, text in docs:
            f.write(json.dumps({"id": i, "title": title, "text": text}) + "\n")
    with open(root / "questions.jsonl", "w", encoding="utf-8") as f:
        for i, q, a, split, d in questions:
            f.write(json.dumps({"id": i, "question": q, "answers": a, "split": split, "doc_ids": d}) + "\n")
    (root / "benchmark.json").write_text(json.dumps({"name": "tiny", "task": "extractive_qa"}))
    return root


@pytest.fixture(scope="session", autouse=True)
def stage_cache(tmp_path_factory):
    """Tests cache their stages in a fresh folder, never the user's; the converted packaged model
    stays where it is (a link), so the real-model tests do not convert it again."""
    from harness.core.paths import cache_dir

    real = cache_dir()
    root = tmp_path_factory.mktemp("harness-cache")
    if (real / "models").is_dir():
        (root / "models").symlink_to(real / "models")
    old = os.environ.get("HARNESS_CACHE")
    os.environ["HARNESS_CACHE"] = str(root)
    yield root
    if old is None:
        os.environ.pop("HARNESS_CACHE", None)
    else:
        os.environ["HARNESS_CACHE"] = old


@pytest.fixture
def tiny_corpus(tmp_path) -> Path:
    return write_corpus(tmp_path / "tiny")


def build_tiny_model(path: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    text = [t for _, _, t in DOCS] + [q for _, q, *_ in QUESTIONS] + ["system user assistant answer"] * 5
    tok.train_from_iterator(text, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", unk_token="<|endoftext|>")
    fast.chat_template = CHATML
    torch.manual_seed(0)
    # max_position_embeddings as SmolLM2's 8192: prompts past it are refused (harness/methods/strategy.py),
    # and with this 400-token BPE one 100-word NYT chunk is ~410 tokens, so rag's top 3 exceed 1024
    cfg = LlamaConfig(vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192,
                      tie_word_embeddings=True, bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                      pad_token_id=fast.pad_token_id)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))
