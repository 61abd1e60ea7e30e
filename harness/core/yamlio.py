"""Reading YAML the one safe way: every YAML file the harness reads (run configs, price tables) goes
through `read_yaml`, and every YAML value given on a command line (`--option k=v`) through `yaml_value`.

PyYAML's safe loader (no python/* tags: nothing is imported or called), plus YAML 1.2 floats
(`lr: 1e-3` is a number), with duplicate keys, anchors, aliases and merge keys refused (no
templating, and no alias bomb), and every error one line naming the file and line.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from harness.core.errors import ConfigError


def _loader():
    """PyYAML's safe loader (no python/* tags: nothing is imported or called), plus YAML 1.2
    floats: `lr: 1e-3` is a number, not the string '1e-3'. Duplicate keys are errors, and so are
    anchors, aliases and merge keys: the config has no templating, and an alias bomb cannot blow up."""
    import yaml
    from yaml.constructor import ConstructorError

    class Loader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent) or getattr(self.peek_event(), "anchor", None):
                event = self.peek_event()
                raise yaml.composer.ComposerError(
                    None, None, f"anchors and aliases (&{event.anchor}, *{event.anchor}) are not supported: "
                    "the config has no templating", event.start_mark)
            return super().compose_node(parent, index)

        def construct_mapping(self, node, deep=False):
            if not isinstance(node, yaml.MappingNode):
                return super().construct_mapping(node, deep)
            mapping = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise ConstructorError(None, None, "merge keys (<<) are not supported: the config has no "
                                           "templating", key_node.start_mark)
                key = self.construct_object(key_node, deep=deep)
                try:
                    duplicate = key in mapping
                except TypeError:
                    raise ConstructorError(None, None, "found an unhashable key", key_node.start_mark) from None
                if duplicate:
                    raise ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
                mapping[key] = self.construct_object(value_node, deep=deep)
            return mapping

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"),
    )
    return Loader


def _key_lines(node, prefix: str = "", out: dict | None = None, depth: int = 0) -> dict[str, int]:
    """'limit' -> 3, 'strategies.rag' -> 5, 'strategies.rag.k' -> 6: the line each key (or list
    item) is on, so that an error names it."""
    import yaml

    out = {} if out is None else out
    if depth > 3:
        return out
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode):
                out.setdefault(prefix + k.value, k.start_mark.line + 1)
                _key_lines(v, f"{prefix}{k.value}.", out, depth + 1)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            if isinstance(item, yaml.ScalarNode):
                out.setdefault(prefix + item.value, item.start_mark.line + 1)
    return out


class Where:
    """Names the file and line of a YAML key in error messages."""

    def __init__(self, path: Path, lines: dict[str, int]):
        self.path, self.lines = path, lines

    def __call__(self, *keys) -> str:
        for key in keys:
            if key in self.lines:
                return f"{self.path}:{self.lines[key]}"
        return str(self.path)


def read_yaml(p: Path) -> tuple[Any, Where]:
    """A YAML file, parsed the one safe way; every problem a ConfigError naming the file (and line).
    A FIFO or device (a read that blocks or never ends) is refused before it is opened."""
    import stat

    try:
        mode = p.stat().st_mode
        if not stat.S_ISREG(mode):
            raise ConfigError(f"{p}: not a regular file" if not stat.S_ISDIR(mode)
                              else f"{p}: cannot read the config file (Is a directory)")
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the config file ({exc.strerror or exc})") from None
    return parse_yaml(text, p)


def parse_yaml(text: str, source) -> tuple[Any, Where]:
    """YAML text (a file's, or a command-line value's) through the hardened loader; errors name
    `source` and the line."""
    import yaml

    p = source
    loader = None
    node = None
    try:
        loader = _loader()(text)  # the reader already refuses control characters
        node = loader.get_single_node()
        data = None if node is None else loader.construct_document(node)
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        raise ConfigError(f"{p}:{line}: invalid YAML (control character #x{exc.character:04x})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark else str(p)
        raise ConfigError(f"{where}: invalid YAML ({getattr(exc, 'problem', None) or exc})") from None
    except RecursionError:
        raise ConfigError(f"{p}: invalid YAML (nested too deeply)") from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, Where(p, _key_lines(node) if node is not None else {})


def yaml_value(text: str, source: str) -> Any:
    """One value given on the command line (`--option k=VALUE`), read as YAML by the hardened loader."""
    return parse_yaml(text, source)[0]
