"""JAX's persistent compilation cache in ``<neuralmass cache root>/jax``, so that a second
process loads the compiled XLA executables instead of compiling again.

Set when the JAX backend first runs (never at import), and only when the user has not
configured a cache directory (``jax_compilation_cache_dir`` / ``JAX_COMPILATION_CACHE_DIR``).
JAX's own thresholds apply (executables that took ≥ 1 s to compile are stored by default).
"""

from __future__ import annotations

import functools

import jax

from .._cache import cache_directory

__all__ = ["enable_compilation_cache"]


@functools.cache
def enable_compilation_cache() -> str | None:
    """Point JAX's persistent cache at ``<cache root>/jax`` unless one is configured; returns
    the directory in use (None when no writable directory exists: JAX then compiles)."""
    configured = jax.config.jax_compilation_cache_dir
    if configured:
        return configured
    try:
        directory = str(cache_directory("jax"))
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", directory)
    # JAX decides once per process whether the cache is used; if it already compiled without
    # one, make it decide again (the cache was unused, so nothing is lost).
    from jax.experimental.compilation_cache import compilation_cache

    compilation_cache.reset_cache()
    return directory
