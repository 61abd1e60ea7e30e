"""Chat models: replies to a list of conversations, from whatever model answers them.

The interface that question generation (harness/data/synth.py) talks to, so that any model that
can hold a conversation can write questions: the local runtime here, or an OpenAI-compatible
endpoint model (issue 16), whose `chat(messages_list, max_new_tokens, stop=None, *,
stop_at_newline=True)` has this signature and also returns objects with `.text`.
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

    def __init__(self, runtime, batch_size: int | None = None):
        self.runtime = runtime
        self.name = runtime.model_name
        self.batch_size = batch_size

    def chat(self, messages_list, max_new_tokens, stop=None, *, stop_at_newline=True, on_result=None):
        if stop:
            raise ValueError("the local runtime stops at the end of the turn (or a newline), not at stop strings")
        prompts = [self.runtime.encode_chat(m) for m in messages_list]
        return self.runtime.generate(prompts, max_new_tokens=max_new_tokens, batch_size=self.batch_size,
                                     stop_at_newline=stop_at_newline, on_batch=on_result)

    def fingerprint(self) -> dict:
        rt = self.runtime
        return {"backend": "local", "model": rt.model_name, "path": str(rt.path), "device": rt.device,
                "dtype": str(rt.dtype).removeprefix("torch."),
                **{k: v for k, v in (rt.provenance or {}).items() if isinstance(v, (str, int, float, bool))}}
