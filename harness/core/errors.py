"""User-facing errors: the CLI prints them as one line and exits with status 2."""


class HarnessError(Exception):
    """A problem with the user's input (config, data, model path); never a bug in the harness."""

    exit_code = 2


class ConfigError(HarnessError):
    pass


class DataError(HarnessError):
    def __init__(self, message: str, path=None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line else f"{path}: "
        super().__init__(where + message)


class StrategyFailed(Exception):
    """A strategy could not finish (NaN loss, bad peft target...). The run records it and goes on."""


def from_fields(cls, values, what: str):
    """cls(**values) for a dataclass cls, where a key that names none of its fields is a ConfigError
    "{what} a, b; known: x, y" (keys of any type named as text: a YAML key 1 is one line, not a TypeError)."""
    import dataclasses

    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known, key=str)
    if unknown:
        raise ConfigError(f"{what} {', '.join(map(str, unknown))}; known: {', '.join(sorted(known))}")
    return cls(**values)
