"""The ``aims`` command.

User mistakes (a missing file, a wrong checksum, a folder that is not writable) end with
one readable paragraph and exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from aims import __version__
from aims.errors import AimsError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="AIMS — Any Image Modality Segmentation: prepare the benchmark, score predictions.",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"aims {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True, is_flag=True,
                                                    help="Print the version and exit.")] = None,
) -> None:
    """AIMS command line."""


@app.command()
def prepare(
    modality: Annotated[list[str], typer.Option("--modality", "-m",
        help="Config to build: depth, hha, or all. Repeat for several.")],
    source: Annotated[Optional[Path], typer.Option(
        help="Local copy of the source (archive, file or extracted folder) instead of a download.")] = None,
    out: Annotated[Optional[Path], typer.Option(
        help="Dataset folder to write (default: $AIMS_HOME/dataset).")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Worker processes (default: all cores).")] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Download (or take --source), verify, convert and write dataset configs."""
    from aims.converters.registry import group_by_source
    from aims.paths import default_dataset_dir

    groups = group_by_source(modality)
    if source is not None and len(groups) > 1:
        raise AimsError(
            f"--source {source} is one source, but the requested modalities come from "
            f"{len(groups)} sources ({', '.join(groups)}); prepare them one at a time."
        )
    summary = run_prepare(groups, source=source, out=out or default_dataset_dir(),
                          workers=workers, progress=progress)
    typer.echo("\n".join(summary))


def run_prepare(groups: dict[str, list[str]], *, source: Path | None, out: Path,
                workers: int | None, progress: bool) -> list[str]:
    """Prepare every source group and return the summary lines."""
    from aims.converters.registry import converter
    from aims.prepare import prepare_source

    start = time.perf_counter()
    lines = []
    for name, configs in groups.items():
        result = prepare_source(converter(name), configs, dataset_dir=out, source=source,
                                workers=workers, progress=progress)
        for config, splits in result.counts.items():
            parts = ", ".join(f"{s}: {c['images']} images, {c['instances']} instances"
                              for s, c in splits.items())
            lines.append(f"  {config:<17} {parts}")
        if result.skipped:
            lines.append(f"  {name}: skipped {len(result.skipped)} sample(s):")
            lines += [f"    {s.image_id}: {s.reason} ({s.path})" for s in result.skipped[:10]]
            if len(result.skipped) > 10:
                lines.append(f"    … and {len(result.skipped) - 10} more (listed in the dataset card)")
    lines.insert(0, f"Prepared {sum(len(c) for c in groups.values())} config(s) in "
                    f"{time.perf_counter() - start:.1f} s:")
    lines.append(f"Dataset: {out}")
    lines.append(f'Load it: datasets.load_dataset("{out}", "<config>")')
    return lines


@app.command()
def demo(
    out: Annotated[Optional[Path], typer.Option(
        help="Folder for the demo's sources and dataset (default: a new temporary folder).")] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Run the pipeline on the bundled miniature sources, in a temporary folder."""
    from aims.converters.registry import CONFIGS, converter

    root = out or Path(tempfile.mkdtemp(prefix="aims-demo-"))
    typer.echo(f"AIMS demo in {root}")
    lines = []
    for name in CONFIGS:
        conv = converter(name)
        src = conv.write_miniature(root / "sources" / name)
        typer.echo(f"  miniature {name} source written to {src}")
        lines += run_prepare({name: list(CONFIGS[name])}, source=src, out=root / "dataset",
                             workers=None, progress=progress)
    typer.echo("\n".join(lines))
    _check_loads(root / "dataset", [c for cs in CONFIGS.values() for c in cs])


def _check_loads(dataset_dir: Path, configs: list[str]) -> None:
    """Load every config back with the real `datasets` library, as a user would."""
    import datasets

    from aims.loader import load_dataset

    datasets.disable_progress_bars()
    for config in configs:
        ds = load_dataset(config, data_dir=dataset_dir)
        sizes = ", ".join(f"{split} {len(part)}" for split, part in ds.items())
        typer.echo(f"  load_dataset({config!r}) → {sizes} rows")


def main() -> None:
    try:
        app(standalone_mode=False)
    except AimsError as exc:
        text = textwrap.fill(str(exc), width=100, break_long_words=False, break_on_hyphens=False)
        print(f"aims: error: {text}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("aims: interrupted; nothing half-written was left in place.", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # click's own usage errors
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(1)
        raise


if __name__ == "__main__":  # pragma: no cover
    main()
