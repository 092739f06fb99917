"""Typed settings of every command: frozen dataclasses, and the one loader of TOML files and sink URLs."""
