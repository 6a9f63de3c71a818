"""Where neuralmass keeps what it compiles: printed Numba modules and their machine code, the
emulated CUDA kernels.

The cache root is ``$NEURALMASS_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/neuralmass``, else
``~/.cache/neuralmass``; each backend has its own folder in it. When that folder cannot be
written, a folder under the system's temporary directory is used instead.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["CACHE_VARIABLE", "cache_directory", "cache_root"]

#: The environment variable that sets the cache root.
CACHE_VARIABLE = "NEURALMASS_CACHE_DIR"


def cache_root() -> Path:
    """The cache root (see the module docstring)."""
    if os.environ.get(CACHE_VARIABLE):
        return Path(os.environ[CACHE_VARIABLE]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "neuralmass"


def cache_directory(name: str) -> Path:
    """``<cache root>/<name>``, created and checked writable; else the same folder under
    ``<temporary directory>/neuralmass-<uid>``. Raises ``OSError`` when neither can be
    written."""
    for directory in (cache_root() / name,
                      Path(tempfile.gettempdir()) / f"neuralmass-{os.getuid()}" / name):
        try:
            directory.mkdir(parents=True, exist_ok=True)
            probe = directory / f".probe-{os.getpid()}"
            probe.write_text("")
            probe.unlink()
            return directory
        except OSError:
            continue
    raise OSError(f"no writable cache directory (tried {cache_root() / name}; set "
                  f"{CACHE_VARIABLE} to a writable folder)")
