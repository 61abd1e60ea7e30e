"""Chat models: replies to a list of conversations, from whatever model answers them.

The one interface that question generation (harness/data/synth.py) and the LLM judge
(harness/analysis/judges.py) talk to, so that any model that can hold a conversation can write
questions or grade answers: the local runtime here, or an OpenAI-compatible endpoint model
(harness/model/endpoint.py), whose `chat(messages_list, max_new_tokens, stop=None, *,
stop_at_newline=True)` has this signature and also returns objects with `.text`.

A model that can also score given continuations implements `option_logprobs(conversations, options)`
(the local runtime does); the judge then takes the most likely label instead of parsing its text.
"""
from __future__ import annotations

from typing import Any, Protocol, Sequence


class ChatModel(Protocol):
    name: str

    def chat(self, messages_list: Sequence[list[dict]], max_new_tokens: int, stop: Sequence[str] | None = None,
             *, stop_at_newline: bool = True) -> list[Any]:
        """One greedy reply (an object with `.text`) per conversation, in input order."""
        ...

    def fingerprint(self) -> dict:
        """What identifies the model's replies (for records and cache keys)."""
        ...


def reply_texts(model: ChatModel, messages_list: Sequence[list[dict]], max_new_tokens: int) -> list[str]:
    """The text of each reply, every line of it (not cut at the first newline)."""
    if not messages_list:
        return []
    return [g.text for g in model.chat(list(messages_list), max_new_tokens, stop_at_newline=False)]


class LocalChatModel:
    """A ChatModel over the local runtime (harness/model/runtime.py): the model's chat template,
    batched greedy decoding with the shared-prefix cache."""

    def __init__(self, runtime, batch_size: int | None = None, *, name: str | None = None,
                 content_sha256: str | None = None):
        self.runtime = runtime
        self.name = name or runtime.model_name
        self.batch_size = batch_size
        self.content_sha256 = content_sha256  # the weights' hash, when the caller keys a cache on the replies

    def chat(self, messages_list, max_new_tokens, stop=None, *, stop_at_newline=True, on_result=None):
        if stop:
            raise ValueError("the local runtime stops at the end of the turn (or a newline), not at stop strings")
        prompts = [self.runtime.encode_chat(m) for m in messages_list]
        return self.runtime.generate(prompts, max_new_tokens=max_new_tokens, batch_size=self.batch_size,
                                     stop_at_newline=stop_at_newline, on_batch=on_result)

    def fingerprint(self) -> dict:
        rt = self.runtime
        return {"backend": "local", "model": self.name, "path": str(rt.path), "device": rt.device,
                # a LazyRuntime knows its dtype_name unloaded (rt.dtype would load the model to say it)
                "dtype": rt.dtype_name if hasattr(rt, "dtype_name") else str(rt.dtype).removeprefix("torch."),
                **({"content_sha256": self.content_sha256} if self.content_sha256 else {}),
                **{k: v for k, v in (rt.provenance or {}).items() if isinstance(v, (str, int, float, bool))}}

    def _partial(self, conversation: list[dict]) -> list[int]:
        """Token ids of a conversation whose last (assistant) message is to be continued."""
        tok = self.runtime.tokenizer
        if tok.chat_template:
            ids = tok.apply_chat_template(conversation, continue_final_message=True, tokenize=True)
            return list(ids["input_ids"] if hasattr(ids, "keys") else ids)
        return self.runtime.encode_chat(conversation[:-1]) + tok(" " + conversation[-1]["content"],
                                                                 add_special_tokens=False)["input_ids"]

    def option_logprobs(self, conversations, options: Sequence[str]) -> list[list[float]]:
        """Per conversation, the log-probability of each option continuing its last (assistant) message
        (the shared prompt prefix computed once)."""
        rt = self.runtime
        conts = [rt.tokenizer(o, add_special_tokens=False)["input_ids"] for o in options]
        requests = [(self._partial(c), o) for c in conversations for o in conts]
        scores = rt.loglikelihood(requests, batch_size=self.batch_size)
        n = len(options)
        return [[s.logprob for s in scores[i * n:(i + 1) * n]] for i in range(len(conversations))]
