"""Marketplace data: the contract, synthetic data, importers, validation."""
