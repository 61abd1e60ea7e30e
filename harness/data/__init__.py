"""Benchmarks and corpora: finding, loading and checking them, task types, chunking documents."""
