"""Publish a prepared dataset to the Hugging Face Hub.

What goes up is exactly what `datasets.load_dataset(repo_id, config)` needs — the card and
every config's parquet shards — plus each config's ``aims_config.json`` (counts, channel
statistics, provenance) so a downloaded copy keeps what the card was rendered from. The
plan is computed once and shown by ``--dry-run``, so what a user reviews is what is sent.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

from aims.errors import AimsError

#: files of a prepared dataset that are published, relative to its folder
PUBLISHED_PATTERNS = ("README.md", "*/*.parquet", "*/aims_config.json")
#: largest README.md read as a dataset card (a real one is a few KiB)
MAX_CARD_BYTES = 16 << 20


@dataclass(frozen=True)
class UploadPlan:
    """The files one publish sends, with their sizes."""

    dataset_dir: Path
    repo_id: str
    files: tuple[tuple[str, int], ...]  # (path in repo, bytes)
    configs: tuple[str, ...]

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in self.files)

    def load_lines(self, *, uploaded: bool) -> list[str]:
        """The exact lines that load each published config (the Hub id is the repo id;
        ``datasets`` resolves ``ORG/NAME`` on the Hub, a bare name would be a local folder)."""
        head = "Load it with:" if uploaded else "Once uploaded, load it with:"
        return [head, "  from datasets import load_dataset"] + [
            f'  load_dataset("{self.repo_id}", "{config}")' for config in self.configs]

    def lines(self) -> list[str]:
        out = [f"Would upload {len(self.files)} files ({_human(self.total_bytes)}) of configs "
               f"{', '.join(self.configs)} to https://huggingface.co/datasets/{self.repo_id}:"]
        out += [f"  {path:<60} {_human(size):>10}" for path, size in self.files]
        return out


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def plan_upload(dataset_dir: Path, repo_id: str) -> UploadPlan:
    """List what would be published, after checking the folder is a complete dataset
    whose card parses with huggingface_hub and names every config present."""
    from huggingface_hub import DatasetCard
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    dataset_dir = Path(dataset_dir)
    try:
        if repo_id.count("/") != 1:
            raise HFValidationError("expected exactly one '/'")
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        reason = str(exc).split(". ")[0]
        raise AimsError(f"--repo-id {repo_id!r:.120} must look like ORG/NAME (e.g. my-lab/aims): "
                        f"{reason:.200}.") from None
    readme = dataset_dir / "README.md"
    if not readme.is_file():
        raise AimsError(
            f"{dataset_dir} holds no prepared dataset (no README.md). Run `aims prepare "
            "--modality all` first, or pass the folder with --data-dir.",
            path=dataset_dir,
        )
    if readme.stat().st_size > MAX_CARD_BYTES:
        raise AimsError(f"{readme} holds {readme.stat().st_size:,} bytes, more than a dataset card "
                        f"({MAX_CARD_BYTES:,} at most); re-run `aims prepare` for one config to "
                        "regenerate it.", path=readme)
    try:
        card = DatasetCard.load(readme)
        card_configs = [str(c["config_name"]) for c in (card.data.to_dict().get("configs") or [])]
    except Exception as exc:  # YAML errors, a configs list of the wrong shape: the card is input
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise AimsError(f"{readme} is not a readable dataset card ({type(exc).__name__}: {first}); "
                        "re-run `aims prepare` for one config to regenerate it.", path=readme) from None
    on_disk = sorted(p.parent.name for p in dataset_dir.glob("*/aims_config.json")
                     if not p.parent.name.startswith("."))
    if sorted(card_configs) != on_disk:
        raise AimsError(
            f"{readme} lists configs {card_configs} but {dataset_dir} holds {on_disk}; the "
            "card is stale. Re-run `aims prepare` for one config to regenerate it.",
            path=readme,
        )
    files = []
    for path in sorted(dataset_dir.rglob("*")):
        rel = path.relative_to(dataset_dir).as_posix()
        if not path.is_file() or any(part.startswith(".") for part in rel.split("/")):
            continue
        if any(fnmatch.fnmatch(rel, pattern) for pattern in PUBLISHED_PATTERNS):
            files.append((rel, path.stat().st_size))
    return UploadPlan(dataset_dir, repo_id, tuple(files), tuple(card_configs))


def publish(plan: UploadPlan, *, private: bool = False, token: str | None = None,
            commit_message: str | None = None) -> str:
    """Create the dataset repo if needed and upload the planned files in one commit;
    returns the commit URL."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    from aims import __version__

    api = HfApi(token=token)
    try:
        api.create_repo(plan.repo_id, repo_type="dataset", private=private, exist_ok=True)
        info = api.upload_folder(
            repo_id=plan.repo_id,
            repo_type="dataset",
            folder_path=plan.dataset_dir,
            allow_patterns=[path for path, _ in plan.files],
            commit_message=commit_message or f"AIMS {__version__}: {', '.join(plan.configs)}",
        )
    except HfHubHTTPError as exc:
        raise AimsError(
            f"the Hub refused the upload to {plan.repo_id} ({exc}). Check that you are logged "
            "in (`huggingface-cli login` or HF_TOKEN) with write access to that organisation."
        ) from None
    except OSError as exc:  # no network
        raise AimsError(
            f"could not reach the Hugging Face Hub to publish {plan.repo_id} ({exc}). Check "
            "your connection; `aims publish --dry-run` shows the plan offline."
        ) from None
    return str(getattr(info, "commit_url", info))
