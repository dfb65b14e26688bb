"""Ranking metrics grouped by query."""
