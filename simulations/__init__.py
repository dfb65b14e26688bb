"""Local multi-merchant simulation on Flower's simulation engine.

Installed as ``ecrec_simulations`` so no generic top-level name is claimed.
"""
