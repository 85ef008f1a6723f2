"""Artifacts and their identity: the content-addressed cache with atomic writes, checkpoints
without pickle, version stamps and model-source digests that go into cache keys."""
