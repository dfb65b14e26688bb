"""The ecrec ServerApp and the ``ecrec-server`` launcher.

Installed as ``ecrec_server`` so no generic top-level name is claimed.
"""
