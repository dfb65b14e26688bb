"""TOML run configurations shipped inside the wheel as ``ecrec.configs``.

``default.toml`` is the embedded config the README's main command runs;
``tiny.toml`` keeps tests fast.
"""
