"""The ecrec ClientApp and the ``ecrec-client`` launcher.

Installed as ``ecrec_client`` so no generic top-level name is claimed.
"""
