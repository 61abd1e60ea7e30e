"""Fingerprints of inputs, the stage cache that reuses indexes, adapters and answers, and its object store."""
