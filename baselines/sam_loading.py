"""Segment Anything backbones as transformers ``SamModel``: sizes, and loading weights.

Three sources of weights, chosen by ``--checkpoint``:

- ``none``: random initialisation (the paper's "train from scratch" baseline);
- a Meta ``sam_vit_*.pth`` file (a plain state dict, ``image_encoder.blocks.N…``): renamed
  to transformers' names by :data:`RENAMES`, a table written here, and loaded strictly —
  every key of the file must be used and every weight of the model must be given;
- a local Hugging Face-format folder (``config.json`` + ``model.safetensors``), read with
  ``SamModel.from_pretrained(..., local_files_only=True)``.

Why our own table rather than transformers' conversion script: the script downloads, is not
shipped in the wheel, and maps keys by substring replacement in dictionary order (``.norm``
inside ``norm_final_attn``…), which is easy to get silently wrong; here every rule is an
anchored regular expression, and a key that no rule (or two models' worth of rules) claims is
an error that names it. ``tests/test_baselines_loading.py`` proves the table against Meta's
own modeling code on the same random weights.
"""

from __future__ import annotations

import os
import re
import stat
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aims.errors import AimsError

if TYPE_CHECKING:  # torch is imported where it is used: `aims --help` reads SIZES from here
    import torch

# ---------------------------------------------------------------------------------------
# Sizes. ViT-B/L/H are Meta's three released encoders; `tiny` is a few-thousand-parameter
# SAM with the same structure (windowed + global blocks, rel-pos, two-way decoder) for tests.

_VIT = {
    "vit-b": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                  global_attn_indexes=[2, 5, 8, 11]),
    "vit-l": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                  global_attn_indexes=[5, 11, 17, 23]),
    "vit-h": dict(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16,
                  global_attn_indexes=[7, 15, 23, 31]),
}
SIZES = (*_VIT, "tiny")

#: Meta's checkpoint file names → size, so ``--size`` can usually be inferred.
_FILE_SIZES = {"sam_vit_b": "vit-b", "sam_vit_l": "vit-l", "sam_vit_h": "vit-h"}

#: SAM's own input normalisation (ImageNet statistics on 0–255 RGB), as in Meta's
#: checkpoints' ``pixel_mean``/``pixel_std`` buffers; used for RGB (zero-shot) inputs.
SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)


def sam_config(size: str = "vit-b", *, meta_layer_norm: bool = True) -> Any:
    """The ``SamConfig`` of a SAM size (``vit-b``, ``vit-l``, ``vit-h`` or ``tiny``).

    ``meta_layer_norm``: Meta's two-way transformer uses ``nn.LayerNorm``'s default eps
    (1e-5) where transformers' default config says 1e-6; keeping Meta's value makes a
    converted ``.pth`` compute exactly what Meta's code computes.
    """
    from transformers import SamConfig, SamMaskDecoderConfig, SamPromptEncoderConfig, SamVisionConfig

    eps = 1e-5 if meta_layer_norm else 1e-6
    if size == "tiny":
        vision = SamVisionConfig(hidden_size=32, output_channels=32, num_hidden_layers=2,
                                 num_attention_heads=2, image_size=64, patch_size=8,
                                 window_size=4, global_attn_indexes=[1], num_pos_feats=16)
        prompt = SamPromptEncoderConfig(hidden_size=32, image_size=64, patch_size=8,
                                        mask_input_channels=16)
        decoder = SamMaskDecoderConfig(hidden_size=32, mlp_dim=64, num_attention_heads=2,
                                       iou_head_hidden_dim=32, layer_norm_eps=eps)
    elif size in _VIT:
        vision = SamVisionConfig(**_VIT[size])
        prompt = SamPromptEncoderConfig()
        decoder = SamMaskDecoderConfig(layer_norm_eps=eps)
    else:
        raise AimsError(f"unknown SAM size {size!r}; choose one of {', '.join(SIZES)}")
    # transformers' vision default (1e-10) assumes pretrained weights follow; a random start
    # (`--checkpoint none`, the scratch baseline) needs a real ViT initialisation
    vision.initializer_range = 0.02
    config = SamConfig(vision_config=vision.to_dict(), prompt_encoder_config=prompt.to_dict(),
                       mask_decoder_config=decoder.to_dict())
    config._attn_implementation = "sdpa"
    return config


# ---------------------------------------------------------------------------------------
# Meta → transformers key renaming. Anchored regular expressions, first full match wins.

def _mlp_head(prefix_meta: str, prefix_hf: str, depth: int) -> list[tuple[str, str]]:
    """Meta's ``MLP.layers.{0..d-1}`` ↔ transformers' ``proj_in`` / ``layers.{i-1}`` /
    ``proj_out`` (SamFeedForward keeps the first and last linear layers apart)."""
    param = r"(?P<param>weight|bias)"
    rules = [(rf"{prefix_meta}\.layers\.0\.{param}", rf"{prefix_hf}.proj_in.\g<param>"),
             (rf"{prefix_meta}\.layers\.{depth - 1}\.{param}", rf"{prefix_hf}.proj_out.\g<param>")]
    rules += [(rf"{prefix_meta}\.layers\.{i}\.{param}", rf"{prefix_hf}.layers.{i - 1}.\g<param>")
              for i in range(1, depth - 1)]
    return rules


def meta_renames(iou_head_depth: int = 3) -> list[tuple[str, str]]:
    """The renaming table (``pattern``, ``replacement``) from Meta's names to ``SamModel``'s."""
    W = r"(weight|bias)"
    attn = r"(self_attn|cross_attn_token_to_image|cross_attn_image_to_token)"
    return [
        # image encoder
        (rf"image_encoder\.patch_embed\.proj\.{W}", r"vision_encoder.patch_embed.projection.\1"),
        (r"image_encoder\.pos_embed", r"vision_encoder.pos_embed"),
        (rf"image_encoder\.blocks\.(\d+)\.norm([12])\.{W}", r"vision_encoder.layers.\1.layer_norm\2.\3"),
        (rf"image_encoder\.blocks\.(\d+)\.attn\.(qkv|proj)\.{W}", r"vision_encoder.layers.\1.attn.\2.\3"),
        (r"image_encoder\.blocks\.(\d+)\.attn\.(rel_pos_[hw])", r"vision_encoder.layers.\1.attn.\2"),
        (rf"image_encoder\.blocks\.(\d+)\.mlp\.(lin[12])\.{W}", r"vision_encoder.layers.\1.mlp.\2.\3"),
        (r"image_encoder\.neck\.0\.weight", r"vision_encoder.neck.conv1.weight"),
        (rf"image_encoder\.neck\.1\.{W}", r"vision_encoder.neck.layer_norm1.\1"),
        (r"image_encoder\.neck\.2\.weight", r"vision_encoder.neck.conv2.weight"),
        (rf"image_encoder\.neck\.3\.{W}", r"vision_encoder.neck.layer_norm2.\1"),
        # prompt encoder (the random Fourier matrix feeds two tied parameters, see below)
        (r"prompt_encoder\.pe_layer\.positional_encoding_gaussian_matrix",
         r"prompt_encoder.shared_embedding.positional_embedding"),
        (r"prompt_encoder\.point_embeddings\.(\d+)\.weight", r"prompt_encoder.point_embed.\1.weight"),
        (r"prompt_encoder\.(not_a_point_embed|no_mask_embed)\.weight", r"prompt_encoder.\1.weight"),
        (rf"prompt_encoder\.mask_downscaling\.0\.{W}", r"prompt_encoder.mask_embed.conv1.\1"),
        (rf"prompt_encoder\.mask_downscaling\.1\.{W}", r"prompt_encoder.mask_embed.layer_norm1.\1"),
        (rf"prompt_encoder\.mask_downscaling\.3\.{W}", r"prompt_encoder.mask_embed.conv2.\1"),
        (rf"prompt_encoder\.mask_downscaling\.4\.{W}", r"prompt_encoder.mask_embed.layer_norm2.\1"),
        (rf"prompt_encoder\.mask_downscaling\.6\.{W}", r"prompt_encoder.mask_embed.conv3.\1"),
        # mask decoder: two-way transformer
        (rf"mask_decoder\.transformer\.layers\.(\d+)\.{attn}\.(q_proj|k_proj|v_proj|out_proj)\.{W}",
         r"mask_decoder.transformer.layers.\1.\2.\3.\4"),
        (rf"mask_decoder\.transformer\.layers\.(\d+)\.norm([1-4])\.{W}",
         r"mask_decoder.transformer.layers.\1.layer_norm\2.\3"),
        (rf"mask_decoder\.transformer\.layers\.(\d+)\.mlp\.(lin[12])\.{W}",
         r"mask_decoder.transformer.layers.\1.mlp.\2.\3"),
        (rf"mask_decoder\.transformer\.final_attn_token_to_image\.(q_proj|k_proj|v_proj|out_proj)\.{W}",
         r"mask_decoder.transformer.final_attn_token_to_image.\1.\2"),
        (rf"mask_decoder\.transformer\.norm_final_attn\.{W}", r"mask_decoder.transformer.layer_norm_final_attn.\1"),
        # mask decoder: tokens, upscaling, hypernetworks, IoU head
        (r"mask_decoder\.(iou_token|mask_tokens)\.weight", r"mask_decoder.\1.weight"),
        (rf"mask_decoder\.output_upscaling\.0\.{W}", r"mask_decoder.upscale_conv1.\1"),
        (rf"mask_decoder\.output_upscaling\.1\.{W}", r"mask_decoder.upscale_layer_norm.\1"),
        (rf"mask_decoder\.output_upscaling\.3\.{W}", r"mask_decoder.upscale_conv2.\1"),
        *_mlp_head(r"mask_decoder\.output_hypernetworks_mlps\.(\d+)", r"mask_decoder.output_hypernetworks_mlps.\1", 3),
        *_mlp_head(r"mask_decoder\.iou_prediction_head", "mask_decoder.iou_prediction_head", iou_head_depth),
    ]


#: Keys of Meta's checkpoints that are constants, not weights: checked, then consumed.
META_BUFFERS = {"pixel_mean": SAM_PIXEL_MEAN, "pixel_std": SAM_PIXEL_STD}
#: transformers keeps the prompt encoder's Fourier matrix twice (tied parameters).
TIED = {"prompt_encoder.shared_embedding.positional_embedding": "shared_image_embedding.positional_embedding"}


def rename_meta_state_dict(state: Mapping[str, torch.Tensor], *, iou_head_depth: int = 3,
                           source: str = "state dict") -> dict[str, torch.Tensor]:
    """Meta-named tensors → ``SamModel``-named tensors. Raises :class:`AimsError` naming the
    keys that no rule claims (a file that is not a SAM checkpoint, or a modified one)."""
    import torch

    rules = [(re.compile(p), r) for p, r in meta_renames(iou_head_depth)]
    out: dict[str, torch.Tensor] = {}
    unused: list[str] = []
    for key, value in state.items():
        if key in META_BUFFERS:
            expected = torch.tensor(META_BUFFERS[key]).view(-1, 1, 1)
            if tuple(value.shape) != (3, 1, 1) or not torch.allclose(value.float(), expected):
                raise AimsError(f"{source}: {key} is {value.flatten().tolist()}, expected SAM's "
                                f"{list(META_BUFFERS[key])}; this checkpoint normalises inputs "
                                "differently from SAM, which this toolkit does not support.")
            continue
        for pattern, repl in rules:
            if pattern.fullmatch(key):
                out[pattern.sub(repl, key)] = value
                break
        else:
            unused.append(key)
    if unused:
        raise AimsError(f"{source}: {len(unused)} key(s) match no rule of the SAM renaming table "
                        f"(is this Meta's sam_vit_*.pth?): {_listing(unused)}")
    for src, dst in TIED.items():
        if src in out:
            out[dst] = out[src]
    return out


def _listing(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" … and {len(keys) - limit} more" if len(keys) > limit else "")


def load_meta_state_dict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], *,
                         source: str = "state dict") -> None:
    """Load Meta-named weights into a plain ``SamModel`` strictly: every key used, none
    missing, every shape equal — otherwise one :class:`AimsError` listing what is wrong."""
    depth = model.config.mask_decoder_config.iou_head_depth
    renamed = rename_meta_state_dict(state, iou_head_depth=depth, source=source)
    own = model.state_dict()
    missing = [k for k in own if k not in renamed]
    unexpected = [k for k in renamed if k not in own]
    shapes = [f"{k} {tuple(renamed[k].shape)} vs model {tuple(own[k].shape)}"
              for k in renamed if k in own and renamed[k].shape != own[k].shape]
    problems = []
    if missing:
        problems.append(f"missing from the file: {_listing(missing)}")
    if unexpected:
        problems.append(f"renamed keys the model does not have: {_listing(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches (wrong --size?): {_listing(shapes)}")
    if problems:
        raise AimsError(f"{source} does not fit SAM {getattr(model, 'aims_size', '')}: "
                        + "; ".join(problems) + ". Pass the --size of the checkpoint "
                        "(vit-b, vit-l, vit-h) or a matching file.")
    model.load_state_dict(renamed, strict=True)


def exception_summary(exc: BaseException) -> str:
    """``Type: first line`` of a library's exception, at most 200 characters: enough to name
    the problem in a one-paragraph error (torch's pickle refusals run to 30 lines)."""
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first[:200]}"


def regular_file_size(path: str | Path, what: str, max_bytes: int | None = None) -> int:
    """The size of ``path`` after checking it is a regular file (not a FIFO or device that
    would hang or never end) of at most ``max_bytes``; else an :class:`AimsError`."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise AimsError(f"cannot read {path} as {what}: {exc.strerror}.", path=path) from None
    if not stat.S_ISREG(st.st_mode):
        raise AimsError(f"{path} is not a regular file; expected {what}.", path=path)
    if max_bytes is not None and st.st_size > max_bytes:
        raise AimsError(f"{path} holds {st.st_size:,} bytes, more than {what} can hold here "
                        f"({max_bytes:,} bytes at most); it is not such a file.", path=path)
    return st.st_size


def load_torch_file(path: str | Path, *, what: str, max_bytes: int | None = None) -> Any:
    """``torch.load`` of a file named by a user or a run folder, safely: a regular file of at
    most ``max_bytes``; in torch's zip format only stored (uncompressed) members, so nothing
    inflates beyond the file's size; ``weights_only=True``, so no pickled code runs. Any
    failure is an :class:`AimsError` naming the file."""
    import torch

    regular_file_size(path, what, max_bytes)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                packed = [i.filename for i in archive.infolist() if i.compress_type != zipfile.ZIP_STORED]
            if packed:
                raise AimsError(f"{path} has compressed members ({_listing(packed, 3)}); torch.save "
                                f"never writes those, so it is not {what}.", path=path)
        return torch.load(path, map_location="cpu", weights_only=True)
    except AimsError:
        raise
    except Exception as exc:  # pickle refusals, truncated or foreign files, RecursionError
        raise AimsError(f"cannot read {path} as {what} ({exception_summary(exc)}); only plain "
                        "tensors and numbers are loaded from it (weights_only).", path=path) from None


def infer_size(checkpoint: str | Path | None, default: str = "vit-b") -> str:
    """The SAM size a checkpoint name implies (``sam_vit_l_0b3195.pth`` → ``vit-l``)."""
    if checkpoint is not None:
        name = Path(str(checkpoint)).name.lower()
        for stem, size in _FILE_SIZES.items():
            if name.startswith(stem):
                return size
    return default


def build_sam(checkpoint: str | Path | None, size: str = "vit-b") -> Any:
    """A ``SamModel`` from ``checkpoint``: ``None``/``"none"`` (random init), a Meta
    ``.pth`` state dict, or a Hugging Face-format folder. Always on CPU, float32."""
    from transformers import SamModel

    if checkpoint is None or str(checkpoint).lower() == "none":
        torch_model = SamModel(sam_config(size))
        torch_model.aims_size = size
        return torch_model
    path = Path(checkpoint).expanduser()
    if not path.exists():
        raise AimsError(f"SAM checkpoint {path} does not exist. Pass Meta's sam_vit_b_01ec64.pth "
                        "(from dl.fbaipublicfiles.com/segment_anything/), a Hugging Face-format "
                        "folder (config.json + model.safetensors), or --checkpoint none.")
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise AimsError(f"{path} is a folder without config.json; expected a Hugging Face-"
                            "format SAM (save_pretrained output, e.g. facebook/sam-vit-base).")
        try:
            model = SamModel.from_pretrained(str(path), local_files_only=True, attn_implementation="sdpa")
        except Exception as exc:  # corrupt config.json or weights: the folder is the user's input
            raise AimsError(f"cannot load {path} as a Hugging Face-format SAM ({exception_summary(exc)}).",
                            path=path) from None
        model.aims_size = f"from {path.name}"
        return model.float()
    state = load_torch_file(path, what="a PyTorch state dict (Meta's sam_vit_*.pth)")
    if isinstance(state, Mapping) and "model" in state and isinstance(state["model"], Mapping):
        state = state["model"]
    if not isinstance(state, Mapping):
        raise AimsError(f"{path} holds a {type(state).__name__}, not a state dict of tensors.")
    model = SamModel(sam_config(size))
    model.aims_size = size
    load_meta_state_dict(model, state, source=str(path))
    return model


__all__ = ["SAM_PIXEL_MEAN", "SAM_PIXEL_STD", "SIZES", "build_sam", "exception_summary", "infer_size",
           "load_meta_state_dict", "load_torch_file", "meta_renames", "regular_file_size",
           "rename_meta_state_dict", "sam_config"]
