"""Documents and verdicts from numbers: the report's sections and renderers, plots, compare and gate."""
