"""The ``aims`` command.

User mistakes (a missing file, a wrong checksum, a folder that is not writable, an
unknown option, a value out of range) end with one readable paragraph and exit status 2;
anything else is a bug and keeps its traceback.

Arguments are checked by typer before any work starts: choices are ``str`` enums built
from the registries they name (so ``--help`` lists them and a new protocol or config
appears by itself), numbers carry their ``min``/``max``, and folders given with ``--out``
refuse an existing file.
"""

from __future__ import annotations

import enum
import errno
import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from aims import __version__
from aims.converters.base import INSTANCE_MODES
from aims.converters.registry import known_configs
from aims.errors import AimsError
from aims.protocols import PROTOCOLS
from aims.scoring import MISSING_POLICIES

#: most worker processes `aims prepare` starts (a typo of 10000 must not fork-bomb the machine)
MAX_WORKERS = 256

#: where every command looks for the prepared dataset: aims.loader.dataset_root's order
DATA_DIR_HELP = ("Prepared dataset (default: $AIMS_DATASET, else the folder the last `aims prepare` "
                 "wrote, else $AIMS_HOME/dataset).")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help: typer 0.29's rich panels print a stray <bool> on flags
    help="AIMS — Any Image Modality Segmentation: prepare the benchmark, score predictions.",
)

Modality = enum.Enum("Modality", [(c, c) for c in (*known_configs(), "all")], type=str)
ProtocolName = enum.Enum("ProtocolName", [(n, n) for n in dict.fromkeys(
    [*PROTOCOLS, *(p.version for p in PROTOCOLS.values())])], type=str)
MissingPolicy = enum.Enum("MissingPolicy", [(n, n) for n in MISSING_POLICIES], type=str)
InstanceSource = enum.Enum("InstanceSource", [(n, n) for n in INSTANCE_MODES], type=str)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"aims {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                    help="Print the version and exit.")] = None,
) -> None:
    """AIMS command line."""


@app.command()
def prepare(
    modality: Annotated[Optional[list[Modality]], typer.Option("--modality", "-m",
        help=f"Config to build: {', '.join(known_configs())}, or all. Repeat for several. Omit it "
             "for a modality of your own (--source DIR holding aims-source.yaml; "
             "docs/bring-your-own-modality.md).")] = None,
    source: Annotated[Optional[list[Path]], typer.Option(metavar="PATH",
        help="Local copy of the source (archive, file or extracted folder) instead of a download. "
             "Repeat for a source given in several parts (e.g. IVRG_RGBNIR and nirscene1.zip). "
             "A folder holding aims-source.yaml is a modality of your own: it builds the config "
             "that file names.")] = None,
    out: Annotated[Optional[Path], typer.Option(file_okay=False,
        help="Dataset folder to write (default: $AIMS_HOME/dataset).")] = None,
    workers: Annotated[Optional[int], typer.Option(min=1, max=MAX_WORKERS,
        help="Worker processes (default: all cores).")] = None,
    max_extract_gb: Annotated[Optional[float], typer.Option(min=0.001,
        help="Allow archives to extract to this many GiB in all (default: the limit in "
             "docs/security.md).")] = None,
    max_extract_ratio: Annotated[Optional[float], typer.Option(min=1.0,
        help="Allow archive members this compression ratio (default: the limit in "
             "docs/security.md).")] = None,
    instances: Annotated[InstanceSource, typer.Option(
        help="Where instances come from: release (the release's own instance annotations where it "
             "ships them, e.g. RGBP-Glass's COCO files; connected components otherwise) or "
             "components (connected components of the semantic masks, always).")] = "release",
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    check: Annotated[bool, typer.Option("--check",
        help="Only list the source files (size, where to get them, where to put them, present and "
             "verified?) and exit: 0 when all are here, 2 otherwise. Without --modality: all.")] = False,
) -> None:
    """Download (or take --source), verify, convert and write dataset configs. Missing source
    files are listed all at once, before any work."""
    from aims.converters.custom_source import SOURCE_FILE, custom_source_folder, register_custom_source
    from aims.converters.registry import group_by_source
    from aims.dataset_pointer import remember_dataset
    from aims.extract import extraction_limits
    from aims.paths import default_dataset_dir
    from aims.prepare import run_prepare
    from aims.source_checklist import source_checklist

    for given in source or []:   # a mistyped path says so, rather than "file missing" in the checklist
        if not os.path.lexists(Path(given).expanduser()):
            raise AimsError(f"--source {given} does not exist; pass the folder or archive you downloaded "
                            "(`aims prepare --check` lists every file, where to get it and where to put it).",
                            path=Path(given))
    own = custom_source_folder(source)
    if own is not None:
        if modality:
            raise AimsError(f"--source {own} holds {SOURCE_FILE}: a modality of your own builds the config "
                            "that file names; run the command without --modality.", path=own)
        name = register_custom_source(own).name
        groups, sources = {name: [name]}, {name: own}
    elif not modality and check:
        groups = group_by_source(["all"])
        sources = _sources_per_group(groups, list(source or []))
    elif not modality:
        raise AimsError("Missing option '--modality': name the config(s) to build ("
                        f"{', '.join(m.value for m in Modality)}), or pass --source DIR for a folder "
                        f"holding {SOURCE_FILE} (a modality of your own; docs/bring-your-own-modality.md).")
    else:
        groups = group_by_source([m.value for m in modality])
        sources = _sources_per_group(groups, list(source or []))
    checklist = source_checklist(groups, sources, verify=check)
    if check or checklist.blocking:  # every missing file at once, before any work
        typer.echo("\n".join(checklist.lines()))
        if check:
            typer.echo(checklist.summary())
            raise typer.Exit(0 if checklist.complete and not checklist.blocking else 2)
        raise AimsError(checklist.summary())
    with extraction_limits(max_gb=max_extract_gb, max_ratio=max_extract_ratio):  # None: the default
        summary = run_prepare(groups, sources=sources, out=out or default_dataset_dir(), workers=workers,
                              progress=progress, instances=instances.value)
    typer.echo("\n".join(summary))
    if remember_dataset(out or default_dataset_dir()) is not None:  # aims.load_dataset(config) finds it
        typer.echo(f"Or: aims.load_dataset(\"{next(iter(groups.values()))[0]}\") (this folder is remembered "
                   "as the last one prepared; AIMS_DATASET or data_dir= choose another)")


def _sources_per_group(groups: dict[str, list[str]], paths: list[Path]) -> dict[str, object]:
    """Which --source each source converter gets. One source: all the paths. Several
    sources and one folder: each converter gets `<folder>/<source name>` when it exists
    (the layout `aims demo` writes), else the folder itself for its layout detection."""
    if not paths:
        return {name: None for name in groups}
    if len(groups) == 1:
        return {name: paths[0] if len(paths) == 1 else tuple(paths) for name in groups}
    if len(paths) != 1 or not paths[0].is_dir():
        raise AimsError(
            f"--source {', '.join(map(str, paths))}: with several modalities from different "
            f"sources ({', '.join(groups)}) --source must be one folder holding them (e.g. "
            "<folder>/nyuv2, <folder>/rgbp_glass, …); or prepare one modality at a time."
        )
    folder = paths[0]
    return {name: folder / name if (folder / name).exists() else folder for name in groups}


@app.command()
def demo(
    out: Annotated[Optional[Path], typer.Option(file_okay=False,
        help="New or empty folder for the demo's sources and dataset (default: a new temporary "
             "folder).")] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """The whole pipeline on the bundled miniatures: prepare, tiny baseline, score,
    leaderboard page, panels."""

    from aims.demo import run_demo

    root = out or Path(tempfile.mkdtemp(prefix="aims-demo-"))
    run_demo(root, echo=typer.echo, progress=progress)


@app.command()
def score(
    predictions: Annotated[Path, typer.Argument(file_okay=False,
        help="Predictions folder (RLE *.json, <config>/<image_id>.npz "
             "or <config>/<image_id>/<instance_id>.png; docs/predictions.md).")],
    config: Annotated[Optional[list[str]], typer.Option("--config", "-c", metavar="CONFIG",
        help="Config to score; repeat for several (default: every config the predictions cover).")] = None,
    split: Annotated[str, typer.Option(help="Dataset split to score against.")] = "test",
    protocol: Annotated[ProtocolName, typer.Option(help="Scoring protocol (docs/protocol.md).")] = "aims",
    out: Annotated[Optional[Path], typer.Option(file_okay=False,
        help="Folder for instances.parquet, results.json and summary.txt "
             "(default: <predictions>-scores-<protocol version> beside the predictions).")] = None,
    missing: Annotated[MissingPolicy, typer.Option(
        help="Evaluated instances without a prediction: error, or zero (IoU 0, reported).")] = "error",
    data_dir: Annotated[Optional[Path], typer.Option(file_okay=False,
        help=DATA_DIR_HELP)] = None,
    json_out: Annotated[bool, typer.Option("--json",
        help="Print the results JSON on stdout (nothing else; the table and paths go to stderr).")] = False,
    allow_click_mismatch: Annotated[bool, typer.Option("--allow-click-mismatch",
        help="Score predictions made with the other protocol's click (recorded in the results).")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Score predictions against the prepared dataset: per-instance IoU and Dice, mIoU, mDice,
    interactive metrics (mIoU@k, NoC@85/90) for k-mask predictions, results JSON."""
    from aims.protocols import get_protocol
    from aims.scoring import check_scores_target, score_predictions

    start = time.perf_counter()
    out_dir = check_scores_target(out or default_scores_dir(predictions, get_protocol(protocol.value).version))
    scores = score_predictions(predictions, data_dir=data_dir, configs=config or None, split=split,
                               protocol=protocol.value, missing=missing.value, progress=progress,
                               allow_click_mismatch=allow_click_mismatch)
    paths = scores.write(out_dir)
    say = (lambda text: typer.echo(text, err=True)) if json_out else typer.echo
    say(scores.format_table())
    for warning in scores.warnings:
        typer.echo(f"warning: {warning}", err=True)
    say(f"Scored {len(scores.table)} instance(s) in {time.perf_counter() - start:.1f} s.")
    say(f"Results: {paths['results']}")
    say(f"Per-instance table: {paths['instances']}")
    if json_out:  # the very document written to results.json
        sys.stdout.write(paths["results"].read_text(encoding="utf-8"))
        sys.stdout.flush()


def default_scores_dir(predictions: Path, version: str) -> Path:
    """``<parent>/<name>-scores-<protocol version>``: beside, never inside, the predictions
    folder (a file inside would make the folder an invalid predictions folder)."""
    p = Path(predictions).expanduser().resolve()
    return p.parent / f"{p.name}-scores-{version}"


leaderboard_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                              help="Build the leaderboard, add results to it.")
app.add_typer(leaderboard_app, name="leaderboard")


@leaderboard_app.command("build")
def leaderboard_build(
    results: Annotated[Path, typer.Option(file_okay=False,
        help="Folder of results JSON files (from `aims score`).")] = Path("results"),
    out: Annotated[Path, typer.Option(file_okay=False, help="Folder for the static page.")] = Path("leaderboard-site"),
    readme: Annotated[Optional[Path], typer.Option(dir_okay=False,
        help="Also write the Markdown table between the leaderboard markers of this README.")] = None,
    reference: Annotated[bool, typer.Option(help="Include the paper's reported numbers.")] = True,
) -> None:
    """Results files + the paper's numbers → sortable static page and Markdown table."""
    from aims.leaderboard.entries import collect
    from aims.leaderboard.render import build_site, markdown, update_readme

    entries = collect(results, include_reference=reference)
    index = build_site(entries, results, out, version=__version__)
    scored = sum(e.link is not None for e in entries)
    typer.echo(f"Leaderboard: {scored} scored result(s), {len(entries) - scored} reference row(s)")
    typer.echo(f"Page: {index}")
    typer.echo(f"Markdown: {out / 'leaderboard.md'}")
    if readme is not None:
        try:
            changed = update_readme(readme, markdown(entries))
        except ValueError as exc:
            raise AimsError(f"{exc}; add the two marker lines where the table belongs.", path=readme) from None
        typer.echo(f"README table {'updated' if changed else 'already up to date'}: {readme}")


@leaderboard_app.command("add")
def leaderboard_add(
    results_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False,
        help="A results JSON written by `aims score`.")],
    results: Annotated[Path, typer.Option(file_okay=False, help="The leaderboard's results folder.")] = Path("results"),
) -> None:
    """Validate a results file against the schema and add it to the results folder."""
    from aims.leaderboard.entries import add_results

    target = add_results(results_file, results)
    typer.echo(f"Added {target}; run `aims leaderboard build --results {results}` to rebuild the page.")


@app.command()
def publish(
    repo_id: Annotated[str, typer.Option("--repo-id", help="Hugging Face dataset repo, ORG/NAME.")],
    data_dir: Annotated[Optional[Path], typer.Option(file_okay=False,
        help=DATA_DIR_HELP)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would be uploaded; upload nothing.")] = False,
    private: Annotated[bool, typer.Option(help="Create the repo as private.")] = False,
) -> None:
    """Upload the prepared dataset (every config's parquet and the card) to the Hub."""
    from aims.loader import dataset_root
    from aims.publish import plan_upload, publish as upload

    plan = plan_upload(dataset_root(data_dir), repo_id)
    typer.echo("\n".join(plan.lines()))
    if dry_run:
        typer.echo("Dry run: nothing uploaded.")
        typer.echo("\n".join(plan.load_lines(uploaded=False)))
        return
    typer.echo(f"Uploaded: {upload(plan, private=private)}")
    typer.echo("\n".join(plan.load_lines(uploaded=True)))


@app.command()
def show(
    config: Annotated[list[str], typer.Option("--config", "-c", metavar="CONFIG",
        help="Config(s) to draw (default: all prepared); repeat for several.")] = [],
    split: Annotated[str, typer.Option(help="Split to draw.")] = "test",
    limit: Annotated[int, typer.Option(min=1, help="Panels per config.")] = 4,
    predictions: Annotated[Optional[Path], typer.Option(file_okay=False,
        help="Predictions folder: draw predicted masks with their IoU.")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(file_okay=False,
        help=DATA_DIR_HELP)] = None,
    out: Annotated[Path, typer.Option(file_okay=False, help="Folder for the PNGs.")] = Path("aims-panels"),
) -> None:
    """PNG panels per image (channels, instances, clicks, predictions) and statistics plots."""
    from aims.show import show_dataset

    written = show_dataset(data_dir=data_dir, configs=config or None, split=split, limit=limit,
                           predictions=predictions, out=out)
    for path in written:
        typer.echo(f"  {path}")
    typer.echo(f"Wrote {len(written)} picture(s) to {out}")


from aims.baselines.cli import app as _baseline_app  # typer only; torch loads inside the commands

app.add_typer(_baseline_app, name="baseline", help="SimCMF baselines on Segment Anything (install the baselines extra).")


#: errors of the machine rather than of the program: reported like a user's mistake
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}


def click_exception_class() -> type[Exception]:
    """The ``ClickException`` of the click copy typer runs on. typer ≥ 0.29 ships its own
    copy of click, older typer uses the click package; ``typer.BadParameter`` is public in
    both and derives from the right one."""
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def _fail(text: str, status: int = 2) -> None:
    """Print one paragraph on stderr and exit."""
    text = textwrap.fill(" ".join(text.split()), width=100, break_long_words=False, break_on_hyphens=False)
    print(text, file=sys.stderr)
    sys.exit(status)


def _usage_error(exc: Exception) -> None:
    """typer's own errors (unknown option, missing or invalid value) as one paragraph."""
    ctx = getattr(exc, "ctx", None)
    if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
        print(ctx.get_help(), file=sys.stderr)   # a bare `aims` or `aims leaderboard`
        sys.exit(2)
    command = ctx.command_path if ctx is not None else "aims"
    message = exc.format_message().strip()
    end = "" if message.endswith((".", "?", "!")) else "."
    _fail(f"{command}: error: {message}{end} See '{command} --help'.")


def main() -> None:
    """Entry point: run the app, turn every user error into one paragraph and exit 2."""
    try:
        status = app(standalone_mode=False)
    except AimsError as exc:
        _fail(f"aims: error: {exc}")
    except KeyboardInterrupt:
        print("aims: interrupted; nothing half-written was left in place.", file=sys.stderr)
        sys.exit(130)
    except click_exception_class() as exc:
        _usage_error(exc)
    except typer.Abort:
        _fail("aims: aborted.", 1)
    except OSError as exc:
        if exc.errno not in ENVIRONMENT_ERRNOS:
            raise
        where = f" ({exc.filename})" if exc.filename else ""
        _fail(f"aims: error: {exc.strerror}{where}. Free some space, or choose files and folders "
              "you may read and write, then run the command again.")
    sys.exit(status if isinstance(status, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
