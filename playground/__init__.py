"""Notebook helpers (figures, tables) over `core`; nothing in `core` imports this package."""
