"""Evaluation harness that compares prompting, RAG and fine-tuning on the same questions."""

__version__ = "0.1.0"
