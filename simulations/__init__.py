"""Local multi-merchant simulation scenarios.

Installed as ``ecrec_simulations`` so no generic top-level name is claimed. The
simulation itself is the ecrec ServerApp and ClientApp on Flower's simulation
engine (:mod:`ecrec.federation.simulation`); this package holds named scenarios
built on it.
"""
