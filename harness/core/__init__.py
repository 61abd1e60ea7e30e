"""Shared vocabulary of every other folder: errors, the record types, safe file writes and paths."""
