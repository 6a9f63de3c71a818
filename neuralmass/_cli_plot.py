"""``neuralmass plot``: :func:`neuralmass.plot.plot` from the command line."""

from __future__ import annotations

from typing import Annotated

import typer

_FORMATS = (".png", ".pdf", ".svg")


def plot_command(
    file: Annotated[str, typer.Argument(
        help="a result file (.nc, .zarr, .npz) or a sweep store (.zarr)")],
    output: Annotated[str | None, typer.Option(
        "-o", "--output", help="the picture (.png, .pdf or .svg; default: FILE with .png)")] = None,
    regions: Annotated[str, typer.Option(help="comma-separated region indices to draw")] =
        "0,1,2",
    set_index: Annotated[int, typer.Option("--set", help="the set whose series and FC")] = 0,
    summary: Annotated[str, typer.Option(
        help="heatmap of a 2-parameter sweep: mean, std or fc_corr")] = "mean",
    target: Annotated[str | None, typer.Option(help="target FC (.npy) for fc_corr")] = None,
    variable: Annotated[str | None, typer.Option(
        help="state variable (default: the first)")] = None,
) -> None:
    """Draw a few regions' time series, the FC matrix and, for a sweep over two parameters,
    a heatmap of a summary over the grid, to PNG."""
    from pathlib import Path

    from .cli import _fail, console
    from .errors import NeuralmassError

    out = Path(output) if output else Path(file).with_suffix(".png")
    if out.suffix not in _FORMATS:
        raise _fail(f"output {str(out)!r} must end in one of {', '.join(_FORMATS)} (it "
                    f"chooses the format), but it ends in {out.suffix or 'no suffix'!r}")
    if not (out.parent if str(out.parent) else Path(".")).is_dir():
        raise _fail(f"output folder {str(out.parent)!r} of {str(out)!r} does not exist")
    try:
        picked = tuple(int(r) for r in regions.split(","))
    except ValueError:
        raise _fail(f"--regions {regions!r}: expected comma-separated integers, "
                    "e.g. 0,1,2") from None
    try:
        import numpy as np

        from .plot import plot

        fc = None if target is None else np.load(target)
        panels = plot(file, out, regions=picked, set_index=set_index, summary=summary,
                      variable=variable, target=fc)
    except (NeuralmassError, OSError) as err:
        raise _fail(str(err)) from None
    console.print(f"wrote {out}: {', '.join(panels)}", highlight=False)
