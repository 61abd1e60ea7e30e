"""How prompts are batched for decoding: by length, under a row cap and a padded-token cap, with the
prefix all prompts share computed once. Pure Python (no torch), so the ray.data actors and the bench
scripts batch exactly as the local runtime does.
"""
from __future__ import annotations

from typing import Sequence

# Greedy tokens an answer may take. Short-answer QA: answers past 24 tokens are sentences anyway,
# and every new token is a decoding step of the whole batch. A benchmark or run may ask for more.
DEFAULT_MAX_NEW_TOKENS = 24


def length_batches(prompts: Sequence[list[int]], batch_size: int, max_tokens: int) -> list[list[int]]:
    """Indices sorted by length, cut into batches under both the row and the padded-token cap."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    batches, cur = [], []
    for i in order:
        if cur and (len(cur) == batch_size or (len(cur) + 1) * len(prompts[i]) > max_tokens):
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


def shared_prefix_len(prompts: Sequence[list[int]], share: bool = True) -> int:
    """The prefix whose KV cache a call computes once: the tokens every prompt shares, but every
    prompt keeps at least one token after it (its logits predict the first new token)."""
    n = common_prefix_len(prompts) if share and len(prompts) > 1 else 0
    return min(n, min(len(p) for p in prompts) - 1)


def common_prefix_len(seqs: Sequence[list[int]]) -> int:
    first = seqs[0]
    n = len(first)
    for s in seqs[1:]:
        m = min(n, len(s))
        i = 0
        while i < m and s[i] == first[i]:
            i += 1
        n = i
        if n == 0:
            break
    return n
