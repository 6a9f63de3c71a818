"""Implementation of :func:`neuralmass.fit` (objectives, optimisers, store, result)."""
