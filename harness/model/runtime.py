"""The model runtime shared by every strategy: one loaded model, batched greedy generation.

Generation speed is most of a run's time on a CPU, so three things matter:
- batches are formed after sorting prompts by length, so little compute goes to padding;
- the token prefix every prompt shares (chat template, system prompt, instruction, few-shot
  demonstrations) is run through the model once, and its KV cache is reused by every batch;
- rows that have finished (end of turn, or a newline after some text) leave the batch at once.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from harness.core.errors import HarnessError
from harness.model.batching import (
    DEFAULT_MAX_NEW_TOKENS,
    length_batches,
    shared_prefix_len,
)
from harness.model.modelstore import resolve_model


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    output_tokens: int
    batch_seconds: float
    batch_size: int
    # From the start of its batch to the batch's first generated token: prefill (and, in the first
    # batch of a call, the shared prefix's). For a batch of one, the time to first token (TTFT).
    first_token_seconds: float | None = None


@dataclass
class LogLikelihood:
    logprob: float  # sum of log-probabilities of the continuation tokens given the prompt
    is_greedy: bool  # every continuation token is the model's argmax (lm-eval's second value)
    tokens: int  # prompt + continuation tokens run through the model
    batch_seconds: float
    batch_size: int
    batch: int  # index of the batch it was scored in


def pick_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise HarnessError(f"--device {device} asked for, but torch sees no CUDA device")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise HarnessError(f"unknown device {device!r}; use auto, cpu or cuda")
    return device


def resolve_dtype(device: str, dtype: str = "auto") -> str:
    # bf16 on GPUs; fp32 on CPU, where bf16 matmuls are not reliably faster and change outputs.
    if dtype == "auto":
        return "bfloat16" if device.startswith("cuda") else "float32"
    return dtype


def default_batch_size(device: str) -> int:
    # Rows per batch; the padded-token cap (Runtime.max_batch_tokens) bounds prefill separately, so
    # long RAG prompts still come ~13 to a batch on CPU. Decoding reads every weight once per step
    # whatever the rows, so short prompts want wide batches. Measured, 150 closed-book questions
    # with SmolLM2-135M, same answers: 2-core CPU 45.5 s at 16, 26.1 s at 64; H100 200 zero-shot
    # questions 34 s at 16, 10 s at 128.
    return 128 if device.startswith("cuda") else 64


class Runtime:
    served = False  # local weights (harness/model/served.py is the endpoint's runtime)

    def __init__(self, model_name: str, device: str = "auto", dtype: str = "auto", progress: bool = True,
                 trust_remote_code: bool = False):
        from safetensors import SafetensorError
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not progress:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        self.model_name = model_name
        self.device = pick_device(device)
        self.dtype = getattr(torch, resolve_dtype(self.device, dtype))
        # Weights only from safetensors (never pickle); the folder's own Python code only if asked.
        self.trust_remote_code = trust_remote_code
        self.path, self.provenance = resolve_model(model_name, progress=progress,
                                                   trust_remote_code=trust_remote_code)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path, trust_remote_code=trust_remote_code)
            self.model = AutoModelForCausalLM.from_pretrained(
                self.path, dtype=self.dtype, use_safetensors=True, trust_remote_code=trust_remote_code
            ).to(self.device)
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
            # a damaged or foreign model folder is bad input; --debug shows the cause
            first = (str(exc).strip().splitlines() or [""])[0]
            raise HarnessError(f"could not load model from {self.path}: {type(exc).__name__}: {first}") from exc
        self.model.eval()
        # Measured defaults. CPU (2 cores): at most ~4k padded prompt tokens a batch, since
        # prefill of 16 x 480 tokens ran at 377 tok/s against 440 for 8 x 480. H100: decoding
        # is launch-bound, so wide batches win (200 zero-shot questions: 34 s at 16, 10 s at 128).
        gpu = self.device.startswith("cuda")
        self.default_batch_size = default_batch_size(self.device)
        self.max_batch_tokens = 65536 if gpu else 4096
        self.model.generation_config.pad_token_id = self.pad_id
        self._vocab_flags = None

    @property
    def context_length(self) -> int | None:
        """The most tokens (prompt plus generated) the model was trained to attend over, from its
        config (max_position_embeddings or its older names); None when the config does not say."""
        cfg = self.model.config
        for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
            value = getattr(cfg, key, None)
            if isinstance(value, int) and value > 0:
                return value
        return None

    # -- model copies for fine-tuning ----------------------------------------------------------
    def fresh_model(self, dtype=torch.float32):
        """A trainable copy of the base weights (fp32 master weights), independent of self.model.
        `dtype`: bfloat16 for the frozen base under bf16 adapter training (half the memory)."""
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(self.path, dtype=dtype, use_safetensors=True,
                                                     trust_remote_code=self.trust_remote_code)
        return model.to(self.device)

    @property
    def pad_id(self) -> int:
        tok = self.tokenizer
        return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    @property
    def stop_ids(self) -> set[int]:
        ids = {self.tokenizer.eos_token_id}
        for t in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>"):
            i = self.tokenizer.convert_tokens_to_ids(t)
            if isinstance(i, int) and i != self.tokenizer.unk_token_id:
                ids.add(i)
        return {i for i in ids if i is not None}

    def encode_chat(self, messages: list[dict]) -> list[int]:
        if self.tokenizer.chat_template:
            ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
            if isinstance(ids, dict) or hasattr(ids, "keys"):
                ids = ids["input_ids"]
            return list(ids)
        text = "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"
        return self.tokenizer(text)["input_ids"]

    def _flags(self):
        """Per vocabulary id: does its text contain a newline, and does it contain non-space text."""
        if self._vocab_flags is None:
            n = len(self.tokenizer)
            texts = self.tokenizer.batch_decode([[i] for i in range(n)])
            newline = torch.tensor(["\n" in t for t in texts])
            visible = torch.tensor([bool(t.strip()) for t in texts])
            self._vocab_flags = (newline, visible)
        return self._vocab_flags

    # -- generation -----------------------------------------------------------------------------
    @torch.inference_mode()
    def generate(
        self,
        prompts: Sequence[list[int]],
        *,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        batch_size: int | None = None,
        stop_at_newline: bool = True,
        model=None,
        on_batch: Callable[[int], None] | None = None,
        share_prefix: bool = True,
        max_batch_tokens: int | None = None,
        prefix_len: int | None = None,
        stop_on_loop: bool = False,
    ) -> list[Generation]:
        """Greedy-decode every prompt. A batch holds at most `batch_size` prompts and at most
        `max_batch_tokens` padded prompt tokens (defaults: the device's, see __init__).
        `stop_on_loop`: a row whose output ends in a loop ("A: A: A: A: ...", see `loop_period`) stops
        there, cut back to two copies of the repeated unit.
        `prefix_len`: the shared prefix to cache (default: the prompts' own, `shared_prefix_len`);
        harness/engine/scaleout/raydata.py gives each slice of one call the whole call's, so it computes as
        the whole."""
        batch_size = batch_size or self.default_batch_size
        max_batch_tokens = max_batch_tokens or self.max_batch_tokens
        model = model or self.model
        if not prompts:
            return []
        if prefix_len is None:
            prefix_len = shared_prefix_len(prompts, share_prefix)
        prefix_cache = None
        results: list[Generation | None] = [None] * len(prompts)
        for idx in length_batches(prompts, batch_size, max_batch_tokens):
            t0 = time.perf_counter()
            if prefix_len >= 8 and prefix_cache is None:
                # Computed once, inside the first batch's timing, so its cost is counted.
                prefix_cache = self._prefill_prefix(model, prompts[idx[0]][:prefix_len])
            use_prefix = prefix_cache is not None
            outs, first = self._generate_batch(
                model,
                [prompts[i] for i in idx],
                prefix_len if use_prefix else 0,
                prefix_cache,
                max_new_tokens,
                stop_at_newline,
                stop_on_loop,
            )
            if self.device.startswith("cuda"):
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            for i, out in zip(idx, outs):
                results[i] = Generation(
                    text=self.tokenizer.decode(out, skip_special_tokens=True),
                    prompt_tokens=len(prompts[i]),
                    output_tokens=len(out),
                    batch_seconds=dt,
                    batch_size=len(idx),
                    first_token_seconds=first - t0,
                )
            if on_batch:
                on_batch(len(idx))
        return results  # type: ignore[return-value]

    @torch.inference_mode()
    def generate_hf(self, prompts, *, max_new_tokens=DEFAULT_MAX_NEW_TOKENS, batch_size=None, model=None, on_batch=None,
                    stop_at_newline=True, **_ignored) -> list[Generation]:
        """Batched greedy decoding through the model's own `generate` (left padding, no shared
        prefix). For models the decoder loop cannot drive: peft prompt-learning adapters prepend
        virtual tokens inside their forward. Output is cut at the first newline after text."""
        model = model or self.model
        stops = sorted(self.stop_ids)
        results: list[Generation | None] = [None] * len(prompts)
        for idx in length_batches(prompts, batch_size or self.default_batch_size, self.max_batch_tokens):
            first = _FirstToken(self.device)
            t0 = time.perf_counter()
            width = max(len(prompts[i]) for i in idx)
            ids = torch.full((len(idx), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for r, i in enumerate(idx):
                ids[r, width - len(prompts[i]):] = torch.tensor(prompts[i])
                mask[r, width - len(prompts[i]):] = 1
            out = model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                 max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stops,
                                 pad_token_id=self.pad_id, stopping_criteria=first.criteria())
            # generate() returns prompt + new tokens, except when a prompt-learning adapter made it
            # decode from input embeddings: then only the new tokens come back.
            echoed = out.shape[1] >= width and torch.equal(out[:, :width].cpu(), ids)
            new = out[:, width:] if echoed else out
            dt = time.perf_counter() - t0
            for r, i in enumerate(idx):
                toks = []
                for t in new[r].tolist():
                    if t in stops:
                        break
                    toks.append(t)
                text = self.tokenizer.decode(toks, skip_special_tokens=True)
                if stop_at_newline and text.strip() and "\n" in text.lstrip():
                    text = text.lstrip().split("\n", 1)[0]
                results[i] = Generation(text, len(prompts[i]), len(toks), dt, len(idx),
                                        None if first.at is None else first.at - t0)
            if on_batch:
                on_batch(len(idx))
        return results  # type: ignore[return-value]

    # -- scoring ------------------------------------------------------------------------------------
    @torch.inference_mode()
    def loglikelihood(
        self,
        requests: Sequence[tuple[list[int], list[int]]],
        *,
        batch_size: int | None = None,
        model=None,
        on_batch: Callable[[int], None] | None = None,
        share_prefix: bool = True,
        plain: bool = False,
        prefix_len: int | None = None,
    ) -> list[LogLikelihood]:
        """Sum log-probability of each (prompt, continuation) pair's continuation tokens, as
        lm-eval's `loglikelihood`. Distinct prompts are batched by length; each batch runs its
        prompts once (after the prefix every prompt shares, whose KV cache is computed once) and
        then all their continuations from that cache, so a question's options cost one prompt
        prefill, not one each. `plain`: whole sequences, right-padded, no cache and no position
        ids, for peft prompt-learning models (their forward prepends virtual tokens). `prefix_len` as
        in `generate`."""
        if any(not c for _, c in requests) or any(not p for p, _ in requests):
            raise HarnessError("loglikelihood needs a non-empty prompt and continuation in every request")
        model = model or self.model
        if not requests:
            return []
        groups: dict[tuple, list[int]] = {}  # distinct prompt -> its requests
        for i, (p, _) in enumerate(requests):
            groups.setdefault(tuple(p), []).append(i)
        prompts = [list(p) for p in groups]
        members = list(groups.values())
        if prefix_len is None:
            prefix_len = shared_prefix_len(prompts, share_prefix and not plain)
        prefix_cache = None
        results: list[LogLikelihood | None] = [None] * len(requests)
        bs = batch_size or self.default_batch_size
        for n, idx in enumerate(length_batches(prompts, bs, self.max_batch_tokens)):
            t0 = time.perf_counter()
            rows = [i for g in idx for i in members[g]]
            conts = [list(requests[i][1]) for i in rows]
            if plain:
                scored = self._score_plain(model, [list(requests[i][0]) + c for i, c in zip(rows, conts)],
                                           [len(c) for c in conts])
            else:
                if prefix_len >= 8 and prefix_cache is None:
                    prefix_cache = self._prefill_prefix(model, prompts[idx[0]][:prefix_len])
                start = prefix_len if prefix_cache is not None else 0
                owner = [k for k, g in enumerate(idx) for _ in members[g]]
                scored = self._score_batch(model, [prompts[g][start:] for g in idx], owner, conts,
                                           start, prefix_cache)
            if self.device.startswith("cuda"):
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            for i, (lp, greedy) in zip(rows, scored):
                results[i] = LogLikelihood(lp, greedy, len(requests[i][0]) + len(requests[i][1]), dt, len(rows), n)
            if on_batch:
                on_batch(len(rows))
        return results  # type: ignore[return-value]

    def _score_batch(self, model, suffixes, owner, conts, prefix_len, prefix_cache):
        """Two passes. The prompts, left-padded after the shared prefix, fill the KV cache and give
        the logits for each first continuation token; the cache rows are then repeated, one per
        continuation, and the continuations (right-padded) run on from it."""
        from transformers import DynamicCache

        dev, b = self.device, len(suffixes)
        width = max(len(s) for s in suffixes)
        ids = torch.full((b, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((b, prefix_len + width), dtype=torch.long)
        mask[:, :prefix_len] = 1
        for r, s in enumerate(suffixes):
            ids[r, width - len(s):] = torch.tensor(s)
            mask[r, prefix_len + width - len(s):] = 1
        ids, mask = ids.to(dev), mask.to(dev)
        cache = DynamicCache(config=model.config)
        if prefix_len:
            for layer, src in enumerate(prefix_cache.layers):
                cache.update(src.keys.expand(b, -1, -1, -1), src.values.expand(b, -1, -1, -1), layer)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, prefix_len:]
        kw = _cache_kwarg(model)
        first = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                      logits_to_keep=1, **{kw: cache}).logits[:, -1, :]
        rep = torch.tensor(owner, device=dev)
        longest = max(len(c) for c in conts)
        out_ids = torch.full((len(conts), longest), self.pad_id, dtype=torch.long)
        out_mask = torch.zeros((len(conts), longest), dtype=torch.long)
        for r, c in enumerate(conts):
            out_ids[r, : len(c)] = torch.tensor(c)
            out_mask[r, : len(c)] = 1
        out_ids, out_mask = out_ids.to(dev), out_mask.to(dev)
        logits = first[rep][:, None, :]
        if longest > 1:
            cache.batch_select_indices(rep)
            mask = torch.cat([mask[rep], out_mask], dim=1)
            pos = positions[rep, -1:] + 1 + torch.arange(longest, device=dev)
            rest = model(input_ids=out_ids, attention_mask=mask, position_ids=pos, use_cache=True,
                         logits_to_keep=longest, **{kw: cache}).logits[:, :-1, :]
            logits = torch.cat([logits, rest], dim=1)  # position j predicts continuation token j
        lens = [len(c) for c in conts]
        return _continuation_logprobs(logits, out_ids, lens, lens, lens)

    def _score_plain(self, model, seqs, cont_lens):
        """Right padding and the model's own positions: peft prompt-learning models ignore
        position ids and prepend virtual tokens, which only shift every row by the same amount."""
        b, width = len(seqs), max(len(s) for s in seqs)
        ids = torch.full((b, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((b, width), dtype=torch.long)
        for r, s in enumerate(seqs):
            ids[r, : len(s)] = torch.tensor(s)
            mask[r, : len(s)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, -width:, :]
        lens = [len(s) for s in seqs]
        return _continuation_logprobs(logits, ids, lens, cont_lens, [n - 1 for n in lens])

    def _prefill_prefix(self, model, prefix: list[int]):
        from transformers import DynamicCache

        cache = DynamicCache(config=model.config)
        ids = torch.tensor([prefix], device=self.device)
        body = getattr(model, "model", None)
        # Only the KV cache is wanted: run the decoder body and skip the vocabulary projection.
        target = body or model
        target(input_ids=ids, use_cache=True, **{_cache_kwarg(target): cache})
        return cache

    def _generate_batch(self, model, prompts, prefix_len, prefix_cache, max_new_tokens, stop_at_newline,
                        stop_on_loop=False):
        from transformers import DynamicCache

        dev = self.device
        b = len(prompts)
        suffixes = [p[prefix_len:] for p in prompts]
        width = max(len(s) for s in suffixes)
        ids = torch.full((b, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((b, prefix_len + width), dtype=torch.long)
        mask[:, :prefix_len] = 1
        for r, s in enumerate(suffixes):  # left-pad the part after the shared prefix
            ids[r, width - len(s) :] = torch.tensor(s)
            mask[r, prefix_len + width - len(s) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, prefix_len:]
        ids, mask, positions = ids.to(dev), mask.to(dev), positions.to(dev)

        cache = DynamicCache(config=model.config)
        if prefix_len:
            for layer_src, in_layer in zip(prefix_cache.layers, range(len(prefix_cache.layers))):
                k = layer_src.keys.expand(b, -1, -1, -1)
                v = layer_src.values.expand(b, -1, -1, -1)
                cache.update(k, v, in_layer)

        newline, visible = (t.to(dev) for t in self._flags())
        stops = torch.tensor(sorted(self.stop_ids), device=dev)
        out = torch.full((b, max_new_tokens), -1, dtype=torch.long, device=dev)
        seen_text = torch.zeros(b, dtype=torch.bool, device=dev)
        active = torch.arange(b, device=dev)  # rows of the original batch still generating
        lengths = torch.zeros(b, dtype=torch.long, device=dev)
        next_pos = positions[:, -1] + 1
        # logits_to_keep=1: project only the last position onto the vocabulary; the full
        # [batch, length, 49k] logits of a RAG prompt batch would be ~1.5 GB of wasted work.
        kw = _cache_kwarg(model)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions,
                       use_cache=True, logits_to_keep=1, **{kw: cache}).logits[:, -1, :]
        first_token = None
        for step in range(max_new_tokens):
            tok = logits.argmax(-1)
            if first_token is None:  # the prefill's token exists: time to first token
                if dev.startswith("cuda"):
                    torch.cuda.synchronize()
                first_token = time.perf_counter()
            done = torch.isin(tok, stops)
            if stop_at_newline:
                done |= newline[tok] & seen_text[active]
            keep_tok = ~torch.isin(tok, stops)
            rows = active[keep_tok]
            out[rows, step] = tok[keep_tok]
            lengths[rows] = step + 1
            seen_text[active] |= visible[tok]
            if stop_on_loop and step % LOOP_CHECK_EVERY == LOOP_CHECK_EVERY - 1:
                period = loop_period(out[active, : step + 1])
                looping = period > 0
                if bool(looping.any()):
                    done |= looping
                    reps = loop_repeats(period[looping])
                    lengths[active[looping]] = step + 1 - (reps - 2) * period[looping]
            still = ~done
            if not bool(still.any()) or step == max_new_tokens - 1:
                break
            if not bool(still.all()):
                sel = still.nonzero().squeeze(-1)
                cache.batch_select_indices(sel)
                active, tok, mask, next_pos = active[sel], tok[sel], mask[sel], next_pos[sel]
            mask = torch.cat([mask, torch.ones((len(active), 1), dtype=mask.dtype, device=dev)], dim=1)
            logits = model(input_ids=tok[:, None], attention_mask=mask, position_ids=next_pos[:, None],
                           use_cache=True, logits_to_keep=1, **{kw: cache}).logits[:, -1, :]
            next_pos = next_pos + 1
        result = []
        for r in range(b):
            row = out[r, : int(lengths[r])].tolist()
            result.append([t for t in row if t >= 0])
        return result, first_token


class _FirstToken:
    """When transformers' `generate` produced its first token: stopping criteria are called after
    every new token, so the first call's time is the time to first token. Never stops anything."""

    def __init__(self, device: str):
        self.device, self.at = device, None

    def criteria(self):
        from transformers import StoppingCriteria, StoppingCriteriaList

        outer = self

        class Mark(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                if outer.at is None:
                    if outer.device.startswith("cuda"):
                        torch.cuda.synchronize()
                    outer.at = time.perf_counter()
                return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

        return StoppingCriteriaList([Mark()])


# A degenerate answer loops ("A: A: A: A: ..." after a RAG prompt, issue 18): a unit of 2 to 8 tokens
# repeated back to back until max_new_tokens. A row is stopped when its last tokens are one unit
# repeated `loop_repeats` times (3, and at least 8 tokens, so "000" in a number is never a loop).
# Checked every 4 steps: a loop costs at most 3 more steps, and the check stays off the critical path.
LOOP_PERIODS = range(2, 9)
LOOP_CHECK_EVERY = 4


def loop_repeats(period):
    """Repeats of a unit of `period` tokens that make a loop: 3, and at least 8 tokens in all."""
    return torch.clamp(-(-8 // period), min=3) if torch.is_tensor(period) else max(3, -(-8 // period))


def loop_period(seqs: torch.Tensor) -> torch.Tensor:
    """Per row of generated tokens [rows, steps]: the smallest period p whose last loop_repeats(p)
    units of p tokens are all the same, else 0."""
    n, length = seqs.shape
    found = torch.zeros(n, dtype=torch.long, device=seqs.device)
    for p in LOOP_PERIODS:
        r = loop_repeats(p)
        if p * r > length:
            break
        units = seqs[:, length - p * r:].reshape(n, r, p)
        same = (units == units[:, :1]).all(dim=2).all(dim=1)
        found = torch.where((found == 0) & same, torch.full_like(found, p), found)
    return found


def _continuation_logprobs(logits, ids, ends, cont_lens, logit_ends):
    """Per row: (sum log-prob, all-greedy) of the `cont_len` tokens of `ids` that end at `ends`,
    predicted by the logits that end at `logit_ends` (exclusive)."""
    out = []
    for r, c in enumerate(cont_lens):
        target = ids[r, ends[r] - c: ends[r]]
        lp = torch.log_softmax(logits[r, logit_ends[r] - c: logit_ends[r]].float(), dim=-1)
        out.append((float(lp.gather(-1, target[:, None]).sum()), bool((lp.argmax(-1) == target).all())))
    return out


def _cache_kwarg(model) -> str:
    """transformers 5.x renamed `past_key_values` to `cache` (the old name warns until 5.40)."""
    import inspect

    return "cache" if "cache" in inspect.signature(type(model).forward).parameters else "past_key_values"
