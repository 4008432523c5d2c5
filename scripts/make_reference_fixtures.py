#!/usr/bin/env python3
"""Regenerate the SimCMF reference fixtures under tests/data/reference/.

The script runs the reference code of the SimCMF paper (public repository
mt-cly/SimCMF, pinned commit below) on small fixed inputs with seeded random
weights and writes what it computes: inputs, the modules' state_dicts and their
outputs, as .safetensors files, plus manifest.json. Nothing of the reference
code is copied here or into the fixtures: the script imports the reference from
the folder given with --reference and only records numbers.

    python scripts/make_reference_fixtures.py --reference /path/to/SimCMF \
        --out tests/data/reference            # write the fixtures
    python scripts/make_reference_fixtures.py --reference /path/to/SimCMF \
        --out tests/data/reference --check    # regenerate into a temporary
                                              # folder and compare byte for byte

Environment: the reference pins torch 1.11, torchvision 0.12, Pillow 10.3.0,
monai 1.3.1, numpy 1.24 (requirements.txt). Use a venv with monai==1.3.1,
pillow==10.3.0, numpy<2, pandas, opencv and python-dateutil, any torch >= 2.0 and
any torchvision; see docs/reference-fixtures.md. Two things are pinned here
on purpose:

* torchvision: only its pure-Python ``torchvision.transforms`` is needed. If the
  installed wheel's compiled ops do not load (a CUDA wheel next to a CPU torch),
  the transforms subpackage is imported without the package's ``__init__``.
  ``transforms.Resize`` on tensors antialiases by default since torchvision 0.17;
  torchvision 0.12 (the reference's pin) never did, so the script gives Resize
  ``antialias=False`` by default, which is 0.12's computation (bilinear
  ``interpolate``, ``align_corners=False``). The manifest records this.
* determinism: one CPU thread, deterministic algorithms, fixed seeds; the output
  is byte-identical from run to run on the same software versions.
"""
from __future__ import annotations

import argparse
import contextlib
import filecmp
import hashlib
import importlib
import importlib.util
import inspect
import io
import json
import os
import sys
import tempfile
import types
from functools import partial
from pathlib import Path

REFERENCE_REPO = "mt-cly/SimCMF"
REFERENCE_COMMIT = "0cdc5c139b0ca4c8e9c53932167208597607db52"
# sha256 over the sorted lines "<path> <git blob sha1>\n" of every *.py file of the
# reference tree at REFERENCE_COMMIT (computed from the files, so a plain archive
# of the commit without .git is recognised too).
REFERENCE_PY_DIGEST = "762d74fc68b3ea5751a301d364653410ba55585018f1e2e4b76719f82ec063cf"

FIXTURE_FORMAT = 1

# The reference files whose code the fixtures exercise; their git blob ids go into
# the manifest.
USED_FILES = [
    "cfg.py",
    "conf/__init__.py",
    "conf/global_settings.py",
    "dataset.py",
    "function.py",
    "utils.py",
    "models/projector.py",
    "models/deep_fusion.py",
    "models/final_block.py",
] + [
    f"models/{v}/modeling/{f}.py"
    for v in ("sam_naive", "sam_lora", "sam_mlp_adapter", "sam_prompt", "sam_prefix")
    for f in ("image_encoder", "transformer", "mask_decoder", "prompt_encoder", "sam", "common")
] + ["models/sam_mlp_adapter/modeling/adapter.py", "models/sam_naive/build_sam.py"]


# --------------------------------------------------------------------------- setup

def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def reference_identity(ref: Path) -> dict:
    lines = []
    blobs = {}
    for p in sorted(ref.rglob("*.py")):
        rel = p.relative_to(ref).as_posix()
        if rel.startswith(".git/"):
            continue
        sha = git_blob_sha1(p.read_bytes())
        lines.append(f"{rel} {sha}\n")
        blobs[rel] = sha
    digest = hashlib.sha256("".join(sorted(lines)).encode()).hexdigest()
    return {"py_digest": digest, "blobs": blobs}


def load_torchvision_transforms():
    """Import torchvision.transforms; fall back to the pure-Python subpackage alone."""
    how = "torchvision package import"
    try:
        import torchvision  # noqa: F401
        import torchvision.transforms as T
        version = getattr(torchvision, "__version__", "?")
    except Exception as exc:  # e.g. a CUDA wheel whose ops need libc10_cuda
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        spec = importlib.util.find_spec("torchvision")
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("torchvision is not installed: pip install torchvision "
                             "(only its Python transforms are used)")
        version = "?"
        for dist in Path(list(spec.submodule_search_locations)[0]).parent.glob("torchvision-*.dist-info"):
            version = dist.name[len("torchvision-"):-len(".dist-info")]
        stub = types.ModuleType("torchvision")
        stub.__path__ = list(spec.submodule_search_locations)
        stub.__version__ = version
        sys.modules["torchvision"] = stub
        import torchvision.transforms as T
        how = f"transforms subpackage only (package import failed: {type(exc).__name__})"
    default_aa = inspect.signature(T.Resize.__init__).parameters.get("antialias")
    patched = False
    if default_aa is not None and default_aa.default is True:
        base = T.Resize

        class Resize(base):  # torchvision 0.12 semantics: tensors are never antialiased
            def __init__(self, size, interpolation=T.InterpolationMode.BILINEAR, max_size=None, antialias=False):
                super().__init__(size, interpolation=interpolation, max_size=max_size, antialias=antialias)

        T.Resize = Resize
        patched = True
    return T, {"version": version, "import": how, "resize_antialias_forced_false": patched}


class Env:
    """Holds the imported torch stack and the reference on sys.path."""

    def __init__(self, ref: Path):
        import numpy as np
        import torch

        self.np = np
        self.torch = torch
        self.ref = ref
        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(True)
        self.T, self.tv_info = load_torchvision_transforms()
        sys.path.insert(0, str(ref))
        import PIL

        try:
            import monai
            monai_version = monai.__version__
        except Exception as exc:
            raise SystemExit(f"monai is needed for the loss fixture ({type(exc).__name__}: {exc}); "
                             "pip install monai==1.3.1 'numpy<2' in a separate venv (docs/reference-fixtures.md)")
        pins = {"monai": (monai_version, "1.3.1"), "pillow": (PIL.__version__, "10.3.0")}
        for what, (have, want) in pins.items():
            if have != want:
                print(f"warning: {what} {have} is not the reference's pin {want}; the manifest records it",
                      file=sys.stderr)
        self.versions = {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "numpy": np.__version__,
            "pillow": PIL.__version__,
            "monai": monai_version,
            "torchvision": self.tv_info,
        }
        with contextlib.redirect_stdout(io.StringIO()):
            self.projector = importlib.import_module("models.projector")

    def variant(self, name):
        return importlib.import_module(f"models.{name}.modeling")


# ----------------------------------------------------------------------- helpers

def randomize_(env: Env, module, seed: int, skip=()):
    """Overwrite every floating tensor of module.state_dict() with seeded values.

    Rules (recorded in the manifest): Linear/Conv/ConvTranspose weights ~ N(0, 1/fan_in)
    (fan_in = numel of one output slice, ConvTranspose: in_channels*k*k); their biases
    ~ N(0, 0.1^2); LayerNorm / LayerNorm2d weight 1 + N(0, 0.1^2), bias N(0, 0.1^2);
    nn.Embedding ~ N(0, 1); the positional-encoding gaussian buffer ~ N(0, 1);
    prompt/prefix tokens ~ N(0, 0.5^2); every other tensor (pos_embed, rel_pos_*) ~ N(0, 0.2^2).
    Tensors are visited in named_modules() order.
    """
    torch = env.torch
    nn = torch.nn
    g = torch.Generator().manual_seed(seed)
    keys = set(module.state_dict().keys())
    seen = set()
    for mname, m in module.named_modules():
        tensors = list(m.named_parameters(recurse=False)) + list(m.named_buffers(recurse=False))
        for pname, t in tensors:
            full = f"{mname}.{pname}" if mname else pname
            if t is None or full not in keys or full in seen or not t.is_floating_point():
                continue
            seen.add(full)
            if any(full.startswith(s) for s in skip):
                continue
            shape = tuple(t.shape)
            r = torch.randn(shape, generator=g, dtype=torch.float32)
            is_norm = isinstance(m, nn.LayerNorm) or type(m).__name__ == "LayerNorm2d"
            if is_norm:
                val = 1.0 + 0.1 * r if pname == "weight" else 0.1 * r
            elif isinstance(m, nn.ConvTranspose2d):
                if pname == "weight":
                    fan_in = shape[0] * shape[2] * shape[3]
                    val = r / fan_in ** 0.5
                else:
                    val = 0.1 * r
            elif isinstance(m, (nn.Linear, nn.Conv2d)):
                if pname == "weight":
                    fan_in = int(t[0].numel())
                    val = r / fan_in ** 0.5
                else:
                    val = 0.1 * r
            elif isinstance(m, nn.Embedding) or "gaussian" in pname:
                val = r
            elif "prompt" in pname or "prefix" in pname:
                val = 0.5 * r
            else:
                val = 0.2 * r
            with torch.no_grad():
                t.copy_(val.to(t.dtype))
    return module


def randn(env, shape, seed, scale=1.0):
    g = env.torch.Generator().manual_seed(seed)
    return env.torch.randn(tuple(shape), generator=g) * scale


def t32(env, x):
    torch = env.torch
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(env.np.asarray(x))
    x = x.detach().cpu()
    if x.is_floating_point():
        x = x.to(torch.float32)
    return x.contiguous().clone()


class Capture:
    """Forward hooks that record the positional/keyword tensor inputs and tensor outputs."""

    def __init__(self, env, model, names):
        self.env = env
        self.data = {}
        self.calls = {}
        self.handles = []
        mods = dict(model.named_modules())
        for n in names:
            if n in mods:
                self.handles.append(mods[n].register_forward_hook(partial(self._hook, n), with_kwargs=True))

    def _put(self, key, val):
        torch = self.env.torch
        if isinstance(val, torch.Tensor):
            self.data[key] = t32(self.env, val)
        elif isinstance(val, (tuple, list)):
            for i, v in enumerate(val):
                self._put(f"{key}.{i}", v)

    def _hook(self, name, module, args, kwargs, output):
        k = self.calls.get(name, 0)
        self.calls[name] = k + 1
        base = f"capture.{name}" + (f".call{k}" if k else "")
        for i, a in enumerate(args):
            self._put(f"{base}.in.{i}", a)
        for kw in sorted(kwargs):
            self._put(f"{base}.in.{kw}", kwargs[kw])
        self._put(f"{base}.out", output)

    def close(self):
        for h in self.handles:
            h.remove()


def shapes(tensors: dict) -> dict:
    return {k: [list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in sorted(tensors.items())}


def state_params(env, module, prefix="param."):
    return {prefix + k: t32(env, v) for k, v in module.state_dict().items()}


def count(module, trainable_only=False):
    return int(sum(p.numel() for p in module.parameters() if (p.requires_grad or not trainable_only)))


def classify_init(env, tensor, pretrained_w=None, pretrained_b=None):
    torch = env.torch
    t = tensor.detach()
    if not t.is_floating_point():
        return "non-float"
    if torch.all(t == 0):
        return "zeros"
    if torch.all(t == 1):
        return "ones"
    if pretrained_w is not None:
        if t.shape == pretrained_w.shape and torch.equal(t, pretrained_w):
            return "copy of pretrained patch_embed.proj.weight"
        s = pretrained_w.sum(1, keepdim=True)
        if t.shape == s.shape and torch.equal(t, s):
            return "pretrained patch_embed.proj.weight summed over its input channels"
    if pretrained_b is not None and t.shape == pretrained_b.shape and torch.equal(t, pretrained_b):
        return "copy of pretrained patch_embed.proj.bias"
    return "random (seed-dependent)"


# -------------------------------------------------------------------- projectors

PROJ_E = 8  # SAM_embedding_chans for the projector fixtures (ViT-B: 768)

PROJECTORS = [
    # name, proj_type, C
    ("projector_simcmf_c9", "simcmf", 9),
    ("projector_simcmf_c1", "simcmf", 1),
    ("projector_baseline_a_c9", "baseline_a", 9),
    ("projector_baseline_b_c9", "baseline_b", 9),
    ("projector_baseline_c_c9", "baseline_c", 9),
    ("projector_baseline_d_c9", "baseline_d", 9),
    ("projector_preconvk1n1d64_c9", "preconvk1n1d64", 9),
    ("projector_preconvk3n1d64_c9", "preconvk3n1d64", 9),
    ("projector_preconvk3n2d64_c9", "preconvk3n2d64", 9),
    ("projector_preconvk3n2d64_c1", "preconvk3n2d64", 1),
    ("projector_preconvk3n3d16_c9", "preconvk3n3d16", 9),
    ("projector_preconvk5n4d8_c4", "preconvk5n4d8", 4),
    ("projector_preattnp8n1d8_c9", "preattnp8n1d8", 9),
    ("projector_preattnp4n2d8_c4", "preattnp4n2d8", 4),
    ("projector_zeroshot_c1", "zeroshot", 1),
    ("projector_zeroshot_c9", "zeroshot", 9),
]

PROJ_CAPTURE = {
    "simcmf": ["projector.moe", "projector.zip_rgbx", "projector.fc", "patch_embed"],
    "baseline_a": ["projector.patch_embedding"],
    "baseline_b": ["projector.zip_rgbx", "projector.patch_embedding"],
    "baseline_c": ["projector.zip_rgbx", "projector.patch_embedding"],
    "baseline_d": ["projector.zip_rgbx", "patch_embed"],
    "preconv": ["projector.zip_proj", "patch_embed"],
    "preattn": ["projector.zip_proj.0", "projector.zip_proj.1", "projector.zip_proj.2", "projector.zip_proj.3",
                "patch_embed"],
    "zeroshot": ["patch_embed"],
}

PROJ_LINES = {
    "simcmf": "models/projector.py:358-384 (construction), 440-454 (forward)",
    "baseline_a": "models/projector.py:312-314, 428-432",
    "baseline_b": "models/projector.py:316-334, 428-432",
    "baseline_c": "models/projector.py:336-349, 428-432",
    "baseline_d": "models/projector.py:351-356, 434-437",
    "preconv": "models/projector.py:386-399, 456-459",
    "preattn": "models/projector.py:401-411, 461-469 (Block: 236-301)",
    "zeroshot": "models/projector.py:413-414, 471-475",
}


def proj_family(pt):
    for k in ("preconv", "preattn"):
        if k in pt:
            return k
    return pt


def make_projector(env, name, pt, C, seed):
    torch = env.torch
    nn = torch.nn
    PatchEmbed = importlib.import_module("models.sam_naive.modeling.image_encoder").PatchEmbed
    holder = nn.Module()
    torch.manual_seed(seed)
    holder.patch_embed = PatchEmbed(kernel_size=(16, 16), stride=(16, 16), in_chans=3, embed_dim=PROJ_E)
    randomize_(env, holder.patch_embed, seed + 1)
    pw = holder.patch_embed.proj.weight.detach().clone()
    pb = holder.patch_embed.proj.bias.detach().clone()
    pretrained = {"image_encoder.patch_embed.proj.weight": pw, "image_encoder.patch_embed.proj.bias": pb}
    ctor = dict(uniform_init=False, modal_chans=C, SAM_embedding_chans=PROJ_E, proj_type=pt)
    out_log = io.StringIO()
    with contextlib.redirect_stdout(out_log):
        torch.manual_seed(seed + 2)
        holder.projector = env.projector.Pre_Callback_Post_Projector(pretrained_state_dict=pretrained, **ctor)
        torch.manual_seed(seed + 3)
        other = env.projector.Pre_Callback_Post_Projector(pretrained_state_dict=pretrained, **ctor)
    init = {}
    other_sd = other.state_dict()
    for k, v in holder.projector.state_dict().items():
        c = classify_init(env, v, pw, pb)
        if c.startswith("random") and torch.equal(v, other_sd[k]):
            c = "deterministic (equal under two seeds)"
        if not c.startswith("random"):
            init[k] = c
    randomize_(env, holder.projector, seed + 4)
    holder.eval()
    x = randn(env, (2, C, 16, 32), seed + 5)  # B, C, H, W: non-square, 1x2 patches
    cap = Capture(env, holder, PROJ_CAPTURE[proj_family(pt)])
    with torch.no_grad():
        out, extra = holder.projector(input=x, func=holder.patch_embed)
    cap.close()
    assert extra is None
    tensors = {"input.x": t32(env, x), "output.embedding": t32(env, out)}
    for k, v in state_params(env, holder).items():
        tensors["param.image_encoder." + k[len("param."):]] = v
    tensors.update(cap.data)
    notes = []
    if out_log.getvalue().strip():
        notes.append("reference printed: " + out_log.getvalue().strip().splitlines()[0])
    entry = {
        "kind": "projector",
        "reference": PROJ_LINES[proj_family(pt)],
        "module": "models.projector.Pre_Callback_Post_Projector",
        "constructor": dict(ctor, pretrained_state_dict="{'image_encoder.patch_embed.proj.weight', '...bias'} = "
                            "the random patch_embed stored here, before randomisation of the projector"),
        "call": "out, None = projector(input=input.x, func=patch_embed)  # patch_embed = SAM PatchEmbed"
                "(Conv2d(3, E, 16, stride 16)) then permute to B,H,W,E",
        "seeds": {"torch.manual_seed before construction": seed + 2, "patch_embed weights": seed + 1,
                  "projector weights": seed + 4, "input": seed + 5},
        "param_names": "param.image_encoder.<name> is the name in the reference's full SAM state_dict "
                       "(image_encoder.projector.*, image_encoder.patch_embed.*)",
        "params_projector": count(holder.projector),
        "init_at_construction": init,
        "notes": notes,
    }
    return name, tensors, entry


def projector_counts(env):
    """Parameter counts of the projectors at ViT-B width (E=768), built on the meta device."""
    torch = env.torch
    P = env.projector.Pre_Callback_Post_Projector
    res = {}

    def n(pt, C, E=768):
        with contextlib.redirect_stdout(io.StringIO()), torch.device("meta"):
            m = P(uniform_init=False, modal_chans=C, SAM_embedding_chans=E, proj_type=pt, pretrained_state_dict=None)
        return count(m)

    fam = {}
    for C in (9,):
        for k in (1, 3, 5):
            for d in (32, 64, 96):
                for nl in (1, 2, 3, 4, 5):
                    fam[f"preconvk{k}n{nl}d{d}"] = n(f"preconvk{k}n{nl}d{d}", C)
    res["paper_family_C9 (preconvk{k}n{n}d{d}, C=9; projector only, SAM patch embedding excluded)"] = fam
    res["fig6_check (C=9, k=3, d=64, n=1..5)"] = {
        "reference_preconvk3n{n}d64": [fam[f"preconvk3n{i}d64"] for i in range(1, 6)],
        "paper_fig6": [30, 5443, 42371, 79299, 116227],
        "preconvk1n1d64 (a single 1x1 conv C->3)": fam["preconvk1n1d64"],
    }
    per_c = {}
    for pt in ("simcmf", "baseline_a", "baseline_b", "baseline_c", "baseline_d", "preconvk3n2d64", "preconvk1n1d64",
               "preattnp16n1d64", "preattnp16n2d128", "zeroshot"):
        per_c[pt] = {str(C): n(pt, C) for C in (1, 3, 4, 6, 9)}
    res["vit_b_E768_by_C (projector module only)"] = per_c
    return res


# ---------------------------------------------------------------- full SAM / PEFT

SAM_CFG = dict(img_size=64, patch_size=16, embed_dim=16, depth=2, num_heads=2, window_size=3,
               global_attn_indexes=[1], out_chans=16, mlp_ratio=4, use_rel_pos=True, qkv_bias=True,
               decoder_depth=2, decoder_mlp_dim=32, decoder_heads=2, iou_head_depth=3, iou_head_hidden_dim=16,
               mask_in_chans=4, num_multimask_outputs=3, in_chans=1, proj_type="simcmf")

VARIANTS = [
    ("sam_naive", "full fine-tuning / linear probing architecture (no PEFT modules)"),
    ("sam_lora", "LoRA on q and v: LORA_R=100, no scale factor (1), A kaiming-uniform, B zeros"),
    ("sam_mlp_adapter", "parallel MLP adapter: ADAPTER_R=200, scale 0.1, ReLU, fed the pre-norm2 residual stream"),
    ("sam_prompt", "prompt tuning: PROMPT_L=400 tokens per attention, Dropout(0.1) (off in eval)"),
    ("sam_prefix", "prefix tuning: PREFIX_L=200 key and 200 value tokens per attention"),
]


def build_tiny_sam(env, variant, pretrained, cfg=SAM_CFG):
    torch = env.torch
    M = env.variant(variant)
    args = argparse.Namespace(uniformInit=False)
    emb = cfg["img_size"] // cfg["patch_size"]
    enc = M.ImageEncoderViT(
        args=args, depth=cfg["depth"], embed_dim=cfg["embed_dim"], img_size=cfg["img_size"],
        mlp_ratio=cfg["mlp_ratio"], norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=cfg["num_heads"],
        patch_size=cfg["patch_size"], qkv_bias=cfg["qkv_bias"], use_rel_pos=cfg["use_rel_pos"],
        global_attn_indexes=cfg["global_attn_indexes"], window_size=cfg["window_size"], out_chans=cfg["out_chans"],
        in_chans=cfg["in_chans"], proj_type=cfg["proj_type"], pretrained_state_dict=pretrained)
    pe = M.PromptEncoder(embed_dim=cfg["out_chans"], image_embedding_size=(emb, emb),
                         input_image_size=(cfg["img_size"], cfg["img_size"]), mask_in_chans=cfg["mask_in_chans"])
    md = M.MaskDecoder(num_multimask_outputs=cfg["num_multimask_outputs"],
                       transformer=M.TwoWayTransformer(depth=cfg["decoder_depth"], embedding_dim=cfg["out_chans"],
                                                       mlp_dim=cfg["decoder_mlp_dim"], num_heads=cfg["decoder_heads"]),
                       transformer_dim=cfg["out_chans"], iou_head_depth=cfg["iou_head_depth"],
                       iou_head_hidden_dim=cfg["iou_head_hidden_dim"])
    sam = M.Sam(args, image_encoder=enc, prompt_encoder=pe, mask_decoder=md,
                pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375])
    sam.eval()
    return sam


def full_capture_names(sam, cfg=SAM_CFG):
    names = ["image_encoder.projector", "image_encoder.patch_embed", "image_encoder.neck", "prompt_encoder",
             "prompt_encoder.pe_layer", "mask_decoder.transformer",
             "mask_decoder.transformer.final_attn_token_to_image", "mask_decoder"]
    for i in range(cfg["depth"]):
        b = f"image_encoder.blocks.{i}"
        names += [b, f"{b}.attn", f"{b}.Adapter_mlp", f"{b}.mlp"]
    for i in range(cfg["decoder_depth"]):
        b = f"mask_decoder.transformer.layers.{i}"
        names += [b, f"{b}.self_attn", f"{b}.cross_attn_token_to_image", f"{b}.cross_attn_image_to_token",
                  f"{b}.Adapter_mlp"]
    mods = dict(sam.named_modules())
    return [n for n in names if n in mods]


def make_full(env, variant, desc, seed):
    torch = env.torch
    cfg = SAM_CFG
    gpre = torch.Generator().manual_seed(seed)
    pw = torch.randn((cfg["embed_dim"], 3, 16, 16), generator=gpre) / (3 * 256) ** 0.5
    pb = 0.1 * torch.randn((cfg["embed_dim"],), generator=gpre)
    pretrained = {"image_encoder.patch_embed.proj.weight": pw, "image_encoder.patch_embed.proj.bias": pb}
    torch.manual_seed(seed + 1)
    with contextlib.redirect_stdout(io.StringIO()):
        sam = build_tiny_sam(env, variant, pretrained)
    init = {}
    for k, v in sam.state_dict().items():
        c = classify_init(env, v, pw, pb)
        if c in ("zeros", "ones") or "pretrained" in c:
            init[k] = c
    randomize_(env, sam, seed + 2)
    sam.eval()
    x = randn(env, (1, cfg["in_chans"], cfg["img_size"], cfg["img_size"]), seed + 3)
    coords = torch.tensor([[[37.0, 22.0]]], dtype=torch.float32)  # (x, y) in the img_size frame
    labels = torch.tensor([[1]], dtype=torch.int)
    cap = Capture(env, sam, full_capture_names(sam))
    with torch.no_grad():
        pred = sam(x, (coords, labels))
    cap.close()
    masks, iou = cap.data["capture.mask_decoder.out.0"], cap.data["capture.mask_decoder.out.1"]
    assert torch.equal(masks, t32(env, pred))
    tensors = {"input.image": t32(env, x), "input.point_coords": coords.clone(), "input.point_labels": labels.clone(),
               "output.low_res_logits": t32(env, pred), "output.iou_pred": iou}
    tensors.update(state_params(env, sam))
    tensors.update(cap.data)
    trainable_rule = {
        "sam_naive": "full fine-tuning: everything but the prompt encoder; "
                     "linear probing: names containing patch_embed or pos_embed",
        "sam_lora": "names containing 'lora'", "sam_mlp_adapter": "names containing 'Adapter'",
        "sam_prompt": "names containing 'prompt' (prompt_encoder.* is frozen again afterwards)",
        "sam_prefix": "names containing 'prefix'",
    }[variant]
    peft = sorted({k.split(".")[-2] if k.split(".")[-1] in ("weight", "bias") else k.split(".")[-1]
                   for k in sam.state_dict() if any(s in k for s in ("lora", "Adapter", "deep_prompt", "prefix"))})
    entry = {
        "kind": "full_forward",
        "variant": variant,
        "what": desc,
        "reference": f"models/{variant}/modeling/*.py; "
                     "assembled like models/sam_naive/build_sam.py:67-119 at tiny size; "
                     "forward = Sam.forward (models/*/modeling/sam.py:55-70), eval mode",
        "constructor": dict(cfg, pretrained_state_dict="random patch embedding (seed below), "
                                                       "used by the simcmf projector's init"),
        "size_note": "_build_sam hardcodes ViT-B 1024/16/256; the classes are built directly at this tiny size. "
                     "The last encoder block must be a global-attention block (final_block returns the last "
                     "global block's output).",
        "call": "low_res_logits = sam(input.image, (input.point_coords, input.point_labels)); iou_pred from the "
                "mask_decoder forward (multimask_output=False)",
        "seeds": {"pretrained patch_embed": seed, "torch.manual_seed before construction": seed + 1,
                  "weights": seed + 2, "input": seed + 3},
        "param_names": "param.<reference state_dict key>",
        "params_total": count(sam),
        "peft_modules": peft,
        "trainable_rule_in_reference": trainable_rule + " (utils.py:49-95); image_encoder.projector.* always trainable",
        "zero_or_pretrained_init": init,
        "captures": "capture.<module>.in.<i|kw>/out.<i>: tensors seen by forward hooks on that module in this forward "
                    "(block-level checks: feed .in to one block loaded from param.*, compare .out)",
    }
    return f"full_{variant}_simcmf_c{cfg['in_chans']}", tensors, entry


def vit_b_counts(env):
    """Total and trainable parameters of the reference's ViT-B models (meta device)."""
    torch = env.torch
    res = {}
    utils = importlib.import_module("utils")
    for variant, net_names in (("sam_naive", ("sam_full_finetune", "sam_linear_probing")), ("sam_lora", ("sam_lora",)),
                               ("sam_mlp_adapter", ("sam_mlp_adapter",)), ("sam_prompt", ("sam_prompt",)),
                               ("sam_prefix", ("sam_prefix",))):
        reg = importlib.import_module(f"models.{variant}").sam_model_registry
        for net in net_names:
            for pt, C in (("simcmf", 9), ("simcmf", 1), ("preconvk3n2d64", 9), ("preconvk3n2d64", 1),
                          ("baseline_d", 9)):
                args = argparse.Namespace(uniformInit=False)
                with contextlib.redirect_stdout(io.StringIO()), torch.device("meta"):
                    sam = reg["vit_b"](args, checkpoint=None, in_chans=C, proj_type=pt, pretrained_state_dict=None)
                    utils.set_trainable_params(sam, net_name=net)
                proj = count(sam.image_encoder.projector)
                tr = count(sam, trainable_only=True)
                res[f"{net}|{pt}|C={C}"] = {"total": count(sam), "trainable": tr, "projector": proj,
                                            "trainable_without_projector": tr - proj}
    return res


# -------------------------------------------------------------------------- loss

def make_loss(env, seed):
    torch = env.torch
    from monai.losses import DiceCELoss

    cases = [("b4_32x32", (4, 1, 32, 32), "random"), ("b1_32x32", (1, 1, 32, 32), "random"),
             ("b2_8x8", (2, 1, 8, 8), "random"), ("b2_16x16_empty_target", (2, 1, 16, 16), "zeros"),
             ("b1_16x16_full_target", (1, 1, 16, 16), "ones")]
    tensors = {}
    out = {}
    for i, (name, shape, tkind) in enumerate(cases):
        g = torch.Generator().manual_seed(seed + i)
        logits = torch.randn(shape, generator=g) * 3.0
        if tkind == "random":
            target = (torch.rand(shape, generator=g) < 0.3).to(torch.float32)
        elif tkind == "zeros":
            target = torch.zeros(shape)
        else:
            target = torch.ones(shape)
        tensors[f"input.{name}.logits"] = logits
        tensors[f"input.{name}.target"] = target
        for red in ("mean", "sum"):
            lf = DiceCELoss(sigmoid=True, squared_pred=True, reduction=red)
            with torch.no_grad():
                tensors[f"output.{name}.{red}.total"] = t32(env, lf(logits, target)).reshape(1)
                tensors[f"output.{name}.{red}.dice_part"] = t32(env, lf.dice(logits, target)).reshape(1)
                tensors[f"output.{name}.{red}.bce_part"] = t32(env, lf.bce(logits, target)).reshape(1)
    entry = {
        "kind": "loss",
        "reference": "function.py:16 (train) and 75 (validation): "
                     "DiceCELoss(sigmoid=True, squared_pred=True, reduction='mean'); "
                     "called as loss(pred[B,1,256,256] logits, mask[B,1,256,256] float)",
        "module": "monai.losses.DiceCELoss (monai pinned at 1.3.1 in requirements.txt)",
        "constructor": {"sigmoid": True, "squared_pred": True, "reduction": "mean (reference) | sum (extra)",
                        "other arguments": "monai defaults (smooth_nr=smooth_dr=1e-5, batch=False, "
                                           "include_background=True, lambda_dice=lambda_ce=1)"},
        "seeds": {"case i uses torch.Generator seed": seed, "i": [c[0] for c in cases]},
        "cases": {c[0]: {"shape": list(c[1]), "target": c[2]} for c in cases},
        "outputs": "output.<case>.<reduction>.total = dice_part + bce_part; dice_part = DiceCELoss.dice, "
                   "bce_part = DiceCELoss.bce (BCEWithLogits; monai uses it when input has one channel)",
    }
    return "loss_dicece", tensors, entry


def make_metric(env, seed):
    torch = env.torch
    utils = importlib.import_module("utils")
    g = torch.Generator().manual_seed(seed)
    pred = torch.randn((2, 1, 16, 16), generator=g)
    mask = (torch.rand((2, 1, 16, 16), generator=g) < 0.4).to(torch.float32)
    tensors = {"input.pred": pred, "input.mask": mask}
    entry = {"kind": "metric", "reference": "utils.py:190-197 (iou), 199-235 (dice), 237-283 (eval_seg); "
             "function.py:73,148 (threshold [0])", "call": "utils.eval_seg(pred, mask, [0]) -> (iou, dice)"}
    try:
        with torch.no_grad():
            iou, dice = utils.eval_seg(pred, mask, [0])
        tensors["output.iou"] = torch.tensor([float(iou)], dtype=torch.float32)
        tensors["output.dice"] = torch.tensor([float(dice)], dtype=torch.float32)
        p1 = pred[:1]
        m1 = mask[:1]
        iou1, dice1 = utils.eval_seg(p1, m1, [0])
        tensors["output.first_only.iou"] = torch.tensor([float(iou1)], dtype=torch.float32)
        tensors["output.first_only.dice"] = torch.tensor([float(dice1)], dtype=torch.float32)
        entry["notes"] = ["iou: per image (inter+1e-6)/(union+1e-6) of (pred>0) vs (mask>0), averaged over the batch; "
                          "dice: per image (2*inter+1e-4)/(sum_pred+sum_mask+1e-4), averaged over the batch"]
    except Exception as exc:  # legacy autograd.Function use may fail on new torch
        entry["error"] = f"{type(exc).__name__}: {exc}"
    return "metric_eval_seg", tensors, entry


# ---------------------------------------------------------------------- pipeline

SRC_H, SRC_W = 40, 48
TALL_H, TALL_W = 1536, 8
SUB = 32         # subsample stride of the 1024x1024 network input
SUB_OFF = 5      # subsample phase: rows/cols SUB_OFF, SUB_OFF+SUB, ...
CROPS = {"crop_tl": (0, 0), "crop_mid": (500, 700)}  # CROPxCROP full-resolution crops (row, col)
CROP = 16


def synthetic_mask(np):
    m = np.zeros((SRC_H, SRC_W), np.uint8)
    m[4:14, 5:17] = 9          # 120 px
    m[20:26, 30:38] = 14       # 48 px
    m[30:33, 6:12] = 5         # 18 px
    m[36, 40:43] = 2           # 3 px
    m[1, 45] = 1               # 1 px
    m[15:19, 20:29] = 21       # 36 px
    m[27:29, 14:16] = 3        # 4 px (thresholds: 1 px ~ 546 px at 1024^2)
    return m


def write_png(env, path, arr, mode=None, palette=None):
    from PIL import Image
    im = Image.fromarray(arr, mode) if mode else Image.fromarray(arr)
    if palette is not None:
        im = im.convert("P") if im.mode != "P" else im
        im.putpalette(palette)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(str(path), format="PNG")


def build_datasets(env, root: Path, seed: int):
    """Lay out tiny synthetic files in each reference loader's expected layout. Returns raw inputs."""
    np = env.np
    rng = np.random.RandomState(seed)
    raw = {}
    mask = synthetic_mask(np)
    raw["mask"] = mask
    yy, xx = np.mgrid[0:SRC_H, 0:SRC_W]

    # NYUDepthv2: {train,test}.txt, Depth/<n>.npy, Mask_gt/<n>.png, HHA/<n>.jpg, RGB/<n>.jpg
    nyu = root / "data" / "NYUDepthv2"
    depth_f = (0.8 + 0.05 * xx + 0.03 * yy + 0.2 * rng.rand(SRC_H, SRC_W)).astype(np.float32)
    depth_u16 = (1000 + 90 * xx + 40 * yy + rng.randint(0, 300, (SRC_H, SRC_W))).astype(np.uint16)
    depth_u16[0:3, 0:5] = 0  # invalid pixels as in raw Kinect depth
    hha = rng.randint(0, 256, (SRC_H, SRC_W, 3)).astype(np.uint8)
    rgb = rng.randint(0, 256, (SRC_H, SRC_W, 3)).astype(np.uint8)
    raw.update({"depth_float32": depth_f, "depth_uint16": depth_u16, "hha": hha, "rgb": rgb})
    for split in ("train", "test"):
        (nyu).mkdir(parents=True, exist_ok=True)
        (nyu / f"{split}.txt").write_text("".join(f"RGB/{n}.jpg\tMask_gt/{n}.png\n" for n in (1, 2, 3)))
    (nyu / "Depth").mkdir(parents=True, exist_ok=True)
    np.save(nyu / "Depth" / "1.npy", depth_f)
    np.save(nyu / "Depth" / "2.npy", depth_u16)
    # a tall, narrow map: the 1024x1024 warp downsamples its height 1.5x (antialiasing would matter here)
    ty, tx = np.mgrid[0:TALL_H, 0:TALL_W]
    depth_tall = (800 + 3 * ty + 50 * tx + rng.randint(0, 400, (TALL_H, TALL_W))).astype(np.uint16)
    mask_tall = np.zeros((TALL_H, TALL_W), np.uint8)
    mask_tall[100:700, 1:6] = 4
    mask_tall[900:1400, 3:8] = 11
    mask_tall[1450:1452, 0:2] = 6
    raw.update({"depth_tall_uint16": depth_tall, "mask_tall": mask_tall})
    np.save(nyu / "Depth" / "3.npy", depth_tall)
    write_png(env, nyu / "Mask_gt" / "3.png", mask_tall)
    for n in ("1", "2"):
        write_png(env, nyu / "Mask_gt" / f"{n}.png", mask)
        write_png(env, nyu / "HHA" / f"{n}.jpg", hha)      # PNG bytes under the .jpg name: lossless
        write_png(env, nyu / "RGB" / f"{n}.jpg", rgb)

    # RGB-Thermal-Glass: CSV (GBK) with header; paths used relative to the working directory
    tg = root / "data" / "RGB-Thermal-Glass"
    temp = (22.0 + 0.2 * xx + 0.1 * yy + 3.0 * rng.rand(SRC_H, SRC_W)).astype(np.float32)
    raw["temperature"] = temp
    scene = tg / "scene_a" / "0001"
    scene.mkdir(parents=True, exist_ok=True)
    np.save(scene / "temperature.npy", temp)
    write_png(env, scene / "rgb.png", rgb)
    write_png(env, scene / "mask.png", mask)
    for split in ("train", "test"):
        rel = "data/RGB-Thermal-Glass/scene_a/0001"
        (tg / f"RGB_T_Glass_{split}_GroundTruth.csv").write_bytes(
            f",image,mask\n0,{rel}/rgb.png,{rel}/mask.png\n".encode("gbk"))

    # IVRG_RGBNIR: CSV (GBK), Outdoor_dataset/<col1>, RGB twin, mask as a palette PNG
    ivrg = root / "data" / "IVRG_RGBNIR"
    nir_rgb = rng.randint(0, 256, (SRC_H, SRC_W, 3)).astype(np.uint8)  # a 3-channel "NIR" file: convert('L') applies
    raw["nir_file_rgb"] = nir_rgb
    od = ivrg / "Outdoor_dataset"
    write_png(env, od / "NIRimages" / "0001_nir.JPG", nir_rgb)
    write_png(env, od / "RGBimages" / "0001_rgb.JPG", rgb)
    pal = np.zeros((256, 3), np.uint8)
    for idx in range(256):  # distinct colours, luma differs from the index
        pal[idx] = ((idx * 37) % 256, (idx * 91 + 13) % 256, (idx * 53 + 7) % 256)
    pal[0] = (0, 0, 0)
    raw["nir_mask_palette"] = pal
    write_png(env, od / "Labels" / "0001.png", mask, mode="L", palette=pal.reshape(-1).tolist())
    for split in ("train", "test"):
        (ivrg / f"IVRG-nir_{split}_GroundTruth.csv").write_bytes(
            ",image,mask\n0,NIRimages/0001_nir.JPG,Labels/0001.png\n".encode("gbk"))

    # pgsnet: {train,test}/image/<id>_rgb.tiff, aolp/<id>_aolp.tiff, dolp/<id>_dolp.tiff,
    # instance_mask/<id>_instance_mask.png
    from PIL import Image
    pg = root / "data" / "pgsnet"
    pg_arrays = [rng.randint(0, 256, (SRC_H, SRC_W, 3)).astype(np.uint8) for _ in range(3)]
    raw["pgsnet_rgb"], raw["pgsnet_aolp"], raw["pgsnet_dolp"] = pg_arrays
    for split in ("train", "test"):
        for sub, arr in zip(("image", "aolp", "dolp"), pg_arrays):
            p = pg / split / sub / f"000001_{'rgb' if sub == 'image' else sub}.tiff"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(str(p), format="TIFF")
        write_png(env, pg / split / "instance_mask" / "000001_instance_mask.png", mask)

    # zju-rgbp: {train,val}/label_sam/<stem>.png, {train,val}/<angle>/<stem>_<angle>°.png (3-channel)
    zj = root / "data" / "zju-rgbp"
    zj_arrays = [rng.randint(0, 256, (SRC_H, SRC_W, 3)).astype(np.uint8) for _ in range(4)]
    for a, arr in zip(("0", "45", "90", "135"), zj_arrays):
        raw[f"zju_{a}"] = arr
    for split in ("train", "val"):
        write_png(env, zj / split / "label_sam" / "frame1.png", mask)
        for a, arr in zip(("0", "45", "90", "135"), zj_arrays):
            write_png(env, zj / split / a / f"frame1_{a}\u00b0.png", arr)
    return raw


PIPELINES = [
    # fixture name, modality key, index, reference class, dataset.py lines, raw inputs stored
    ("pipeline_depth_float32", "d", 0, "NYUDv2_D", "839-943", ["depth_float32", "mask"]),
    ("pipeline_depth_uint16", "d", 1, "NYUDv2_D", "839-943", ["depth_uint16", "mask"]),
    ("pipeline_hha", "hha", 0, "NYUDv2_HHA", "1150-1256", ["hha", "mask"]),
    ("pipeline_depth_tall_uint16", "d", 2, "NYUDv2_D", "839-943", ["depth_tall_uint16", "mask_tall"]),
    ("pipeline_thermal", "t", 0, "Thermal", "1804-1902", ["temperature", "mask"]),
    ("pipeline_nir", "nir", 0, "NIR", "1309-1404", ["nir_file_rgb", "mask", "nir_mask_palette"]),
    ("pipeline_pgsnet_rgbp", "pgsnet_rgbp", 0, "PGSNet_RGBP", "358-461",
     ["pgsnet_rgb", "pgsnet_aolp", "pgsnet_dolp", "mask"]),
    ("pipeline_zju_rgbp", "zju-rgbp", 0, "ZJU_RGBP", "247-355", ["zju_0", "zju_45", "zju_90", "zju_135", "mask"]),
]


class Recorder:
    """Wraps a transform object; records what it returns (behaviour unchanged)."""

    def __init__(self, inner, sink, key):
        self.inner, self.sink, self.key = inner, sink, key

    def __call__(self, x):
        y = self.inner(x)
        self.sink.setdefault(self.key, []).append(y)
        return y


def run_pipelines(env, seed):
    np = env.np
    torch = env.torch
    results = []
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="simcmf_fixture_data_") as tmp:
        root = Path(tmp)
        raw = build_datasets(env, root, seed)
        os.chdir(root)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                dataset = importlib.import_module("dataset")
            for name, modality, index, cls_name, lines, raw_keys in PIPELINES:
                args = argparse.Namespace(modality=modality, image_size=1024, out_size=256, b=4, ddp=False)
                train_loader, test_loader, _, _ = dataset.get_dataloader(args)
                tensors = {}
                entry = {"kind": "pipeline", "modality_key": modality,
                         "reference": f"dataset.py:{lines} (class {cls_name}); transforms dataset.py:20-38; "
                                      f"click utils.py:285-300",
                         "call": f"dataset.get_dataloader(args(modality={modality!r}, image_size=1024, out_size=256))"
                                 f"[1].dataset[{index}] (test split) and [0].dataset[{index}] (train split)"}
                for k in raw_keys:
                    tensors[f"input.raw.{k}"] = torch.as_tensor(np.ascontiguousarray(raw[k]))
                out = {}
                for split, loader in (("test", test_loader), ("train", train_loader)):
                    ds = loader.dataset
                    assert type(ds).__name__ == cls_name, type(ds).__name__
                    sink = {}
                    comp = ds.transform
                    orig = list(comp.transforms)
                    comp.transforms = [Recorder(orig[0], sink, "to_tensor")] + orig[1:]
                    choices = []
                    real_choice = np.random.choice

                    def rec_choice(a, *aa, **kw):
                        choices.append(np.array(a).copy())
                        return real_choice(a, *aa, **kw)

                    np.random.seed(seed)
                    np.random.choice = rec_choice
                    try:
                        item = ds[index]
                    finally:
                        np.random.choice = real_choice
                        comp.transforms = orig
                    out[split] = (item, sink, choices, ds)
                item, sink, _, ds = out["test"]
                img = item["image"]
                assert img.shape[-2:] == (1024, 1024)
                C = img.shape[0]
                pre = sink["to_tensor"]
                tensors["output.to_tensor"] = t32(env, torch.cat(pre, 0))
                rows = np.arange(SUB_OFF, 1024, SUB)
                tensors[f"output.image.sub{SUB}"] = t32(env, img[:, rows][:, :, rows])
                for cname, (r0, c0) in CROPS.items():
                    tensors[f"output.image.{cname}"] = t32(env, img[:, r0:r0 + CROP, c0:c0 + CROP])
                tensors["output.image.sum_f64"] = img.to(torch.float64).sum(dim=(1, 2)).contiguous()
                tensors["output.image.sumsq_f64"] = (img.to(torch.float64) ** 2).sum(dim=(1, 2)).contiguous()
                label = item["label"]
                assert int(label.max()) <= 255 and int(label.min()) >= 0
                tensors["output.label"] = label.to(torch.uint8).contiguous()
                tensors["output.pt"] = torch.as_tensor(np.asarray(item["pt"])).to(torch.int32)
                tensors["output.p_label"] = torch.as_tensor(np.asarray(item["p_label"])).to(torch.int32)
                ids = np.asarray(item["valid_region_ids"])
                tensors["output.valid_region_ids"] = torch.as_tensor(ids).to(torch.int32)
                consts = {k: [float(x) for x in v.reshape(-1)] for k, v in sorted(vars(ds).items())
                          if isinstance(v, torch.Tensor) and ("mean" in k or "std" in k)}
                for k, v in vars(ds).items():
                    if isinstance(v, torch.Tensor) and ("mean" in k or "std" in k):
                        tensors[f"constant.{k}"] = t32(env, v.reshape(-1))
                titem, tsink, tchoices, _ = out["train"]
                tl = titem["label"]
                rid = int(np.asarray(titem["valid_region_ids"]).reshape(-1)[0])
                same = bool(torch.equal(tl.to(torch.int64), (label.to(torch.int64) == rid).to(torch.int64)))
                tensors["output.train.region_candidates"] = torch.as_tensor(tchoices[0]).to(torch.int32)
                tensors["output.train.region_id"] = torch.tensor([rid], dtype=torch.int32)
                tensors["output.train.pt"] = torch.as_tensor(np.asarray(titem["pt"])).to(torch.int32)
                same_img = int(torch.equal(titem["image"], img))
                tensors["output.train.image_equals_test"] = torch.tensor([same_img], dtype=torch.int32)
                entry.update({
                    "source_size_hw": list(tensors["output.to_tensor"].shape[-2:]),
                    "channels": int(C),
                    "constants_observed": consts,
                    "outputs": {
                        "output.to_tensor": "what ToTensor returned (source resolution, before the 1024 resize "
                                            "and before normalisation)",
                        f"output.image.sub{SUB}": f"network input [C,1024,1024] sampled at rows/cols "
                                                  f"{SUB_OFF}+{SUB}k (k=0..{1024 // SUB - 1})",
                        "output.image.crop_*": f"{CROP}x{CROP} full-resolution crops at (row, col) {CROPS}",
                        "output.image.sum*_f64": "float64 per-channel sum / sum of squares of the whole "
                                                 "[C,1024,1024] input",
                        "output.label": "label [1,256,256] (test split: region ids; int32 in the reference, "
                                        "stored uint8)",
                        "output.pt / p_label / valid_region_ids": "test clicks (x, y) in the 1024 frame, one per "
                                                                  "id, in id order",
                        "output.train.*": f"train split with np.random.seed({seed}): candidates passed to "
                                          "np.random.choice, "
                                          "the chosen id and its random click",
                    },
                    "train_label_equals_test_label_eq_id": same,
                    "seeds": {"synthetic data numpy RandomState": seed, "np.random.seed before __getitem__": seed},
                })
                results.append((name, tensors, entry))
        finally:
            os.chdir(cwd)
    return results


# -------------------------------------------------------------------------- main

def write_fixture(env, out: Path, name, tensors, entry, manifest):
    from safetensors.torch import save_file
    clean = {}
    aliases = {}
    # non-captures first, then captures in sorted order; a capture equal to a tensor
    # already kept is stored once and listed under "aliases"
    order = sorted(tensors, key=lambda k: (k.startswith("capture."), k))
    for k in order:
        v = tensors[k].detach().cpu().contiguous().clone()
        if v.is_floating_point() and v.dtype != env.torch.float64:
            v = v.to(env.torch.float32)
        if k.startswith("capture."):
            same = next((j for j, w in clean.items() if w.shape == v.shape and w.dtype == v.dtype
                         and env.torch.equal(w, v)), None)
            if same is not None:
                aliases[k] = same
                continue
        clean[k] = v
    path = out / f"{name}.safetensors"
    # one metadata key only: safetensors writes the metadata map in arbitrary order
    save_file(clean, str(path), metadata={"fixture": f"{name} from {REFERENCE_REPO}@{REFERENCE_COMMIT}"})
    entry = dict(entry)
    entry["file"] = path.name
    entry["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    entry["bytes"] = path.stat().st_size
    entry["tensors"] = len(clean)
    if aliases:
        entry["aliases"] = dict(sorted(aliases.items()))
    manifest["fixtures"][name] = entry


def generate(ref: Path, out: Path, allow_other_commit: bool):
    ident = reference_identity(ref)
    if ident["py_digest"] != REFERENCE_PY_DIGEST and not allow_other_commit:
        raise SystemExit(f"{ref} is not {REFERENCE_REPO}@{REFERENCE_COMMIT} (py digest {ident['py_digest']}); "
                         "pass --allow-other-commit to record another tree")
    env = Env(ref)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.safetensors"):
        old.unlink()
    manifest = {
        "format": FIXTURE_FORMAT,
        "reference": {
            "repository": REFERENCE_REPO,
            "commit": REFERENCE_COMMIT if ident["py_digest"] == REFERENCE_PY_DIGEST else None,
            "py_digest": ident["py_digest"],
            "py_digest_matches_pinned_commit": ident["py_digest"] == REFERENCE_PY_DIGEST,
            "used_files_git_blob": {f: ident["blobs"].get(f) for f in USED_FILES},
        },
        "generator": "scripts/make_reference_fixtures.py",
        "software": env.versions,
        "determinism": "torch.set_num_threads(1), torch.use_deterministic_algorithms(True), explicit seeds",
        "weight_randomisation": inspect.getdoc(randomize_),
        "fixtures": {},
    }
    seed = 1000
    for name, pt, C in PROJECTORS:
        n, t, e = make_projector(env, name, pt, C, seed)
        write_fixture(env, out, n, t, e, manifest)
        seed += 10
    for i, (variant, desc) in enumerate(VARIANTS):
        n, t, e = make_full(env, variant, desc, 2000 + 10 * i)
        write_fixture(env, out, n, t, e, manifest)
    n, t, e = make_loss(env, 3000)
    write_fixture(env, out, n, t, e, manifest)
    n, t, e = make_metric(env, 3100)
    write_fixture(env, out, n, t, e, manifest)
    for n, t, e in run_pipelines(env, 4000):
        write_fixture(env, out, n, t, e, manifest)
    manifest["parameter_counts"] = {"projectors": projector_counts(env), "vit_b_models": vit_b_counts(env)}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    total = sum(p.stat().st_size for p in out.iterdir())
    return total


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reference", required=True, type=Path,
                    help="checkout or archive of mt-cly/SimCMF at the pinned commit")
    ap.add_argument("--out", required=True, type=Path, help="output folder (tests/data/reference)")
    ap.add_argument("--check", action="store_true", help="regenerate into a temporary folder and compare with --out")
    ap.add_argument("--allow-other-commit", action="store_true",
                    help="accept a reference tree that is not the pinned commit")
    a = ap.parse_args(argv)
    ref = a.reference.resolve()
    if not (ref / "models" / "projector.py").is_file():
        raise SystemExit(f"{ref} does not look like the SimCMF reference (models/projector.py missing)")
    if a.check:
        with tempfile.TemporaryDirectory(prefix="simcmf_fixture_check_") as tmp:
            generate(ref, Path(tmp), a.allow_other_commit)
            want = sorted(p.name for p in a.out.iterdir())
            got = sorted(p.name for p in Path(tmp).iterdir())
            diff = sorted(set(want) ^ set(got))
            _, mismatch, errors = filecmp.cmpfiles(a.out, tmp, sorted(set(want) & set(got)), shallow=False)
            if diff or mismatch or errors:
                print("fixtures differ:", {"only_one_side": diff, "different": mismatch, "errors": errors})
                return 1
            print(f"fixtures identical: {len(got)} files")
            return 0
    total = generate(ref, a.out.resolve(), a.allow_other_commit)
    print(f"wrote {a.out} ({total} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
