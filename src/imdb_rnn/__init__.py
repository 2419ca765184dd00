"""Recurrent sentiment models for the IMDb Large Movie Review dataset (aclImdb)."""

__version__ = "0.1.0"
