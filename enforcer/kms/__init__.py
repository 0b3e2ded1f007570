"""KMS adapters for the engine's :class:`~enforcer.engine.ports.Kms` port: KES (:mod:`.kes`) and
AWS KMS (:mod:`.aws`), opened from settings by :mod:`.factory`.

The in-memory fake used by unit tests lives with the tests (``tests/doubles/kms.py``).
"""
