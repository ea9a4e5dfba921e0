"""Shared helpers: argument validation."""
