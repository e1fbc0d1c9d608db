"""Synthetic corpora generated deterministically from a seed (no downloads)."""
