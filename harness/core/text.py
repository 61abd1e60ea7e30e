"""Text for a terminal: whatever a benchmark file, a config or a model's output holds, what the
harness prints carries no raw control sequence (ESC [ 2 J clears a screen, OSC 52 writes the
clipboard, U+202E reverses what follows)."""
from __future__ import annotations


def terminal(text: str, newlines: bool = True) -> str:
    """Every character that is not printable shown as its escape (\\x1b, \\u202e, \\r), line breaks
    kept when `newlines` (else escaped too, so the text stays on one line)."""
    text = str(text)
    if text.isprintable() or (newlines and all(c.isprintable() or c == "\n" for c in text)):
        return text
    return "".join(c if c.isprintable() or (newlines and c == "\n") else repr(c)[1:-1] for c in text)
