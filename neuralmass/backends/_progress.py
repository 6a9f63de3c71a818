"""The progress bar of the backends that run in chunks of steps (Numba, CUDA)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

__all__ = ["progress_bar"]


@contextlib.contextmanager
def progress_bar(enabled: bool, total: int, description: str) -> Iterator[Callable[[int], None]]:
    """Yields ``advance(n)``, which moves a rich progress bar of ``total`` units by ``n``
    (thread-safe: rich updates under a lock); a no-op when ``enabled`` is false."""
    if not enabled:
        yield lambda n: None
        return
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.update(task, advance=n)
