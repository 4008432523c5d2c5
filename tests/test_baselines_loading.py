"""Meta SAM checkpoints → transformers SamModel: the renaming table, proven against Meta's
own modeling code on the same random weights (tiny size, CPU)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types
from functools import partial

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from aims.baselines.sam_loading import build_sam, load_meta_state_dict, rename_meta_state_dict  # noqa: E402
from aims.errors import AimsError  # noqa: E402


def _meta_modeling():
    """Meta's `segment_anything.modeling` without running the package's __init__ (which
    imports torchvision; torchvision's wheel does not import on CPU torch here): register a
    bare parent package pointing at the installed folder, then import the pure-torch
    subpackage from it."""
    if "segment_anything.modeling" in sys.modules:
        return sys.modules["segment_anything.modeling"]
    spec = importlib.util.find_spec("segment_anything")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("segment-anything is not installed (pip install --no-deps segment-anything)")
    if "segment_anything" not in sys.modules:
        pkg = types.ModuleType("segment_anything")
        pkg.__path__ = list(spec.submodule_search_locations)
        pkg.__spec__ = importlib.machinery.ModuleSpec("segment_anything", None, is_package=True)
        pkg.__spec__.submodule_search_locations = pkg.__path__
        sys.modules["segment_anything"] = pkg
    import segment_anything.modeling as modeling

    return modeling


def _tiny_meta_sam(seed: int = 0):
    m = _meta_modeling()
    torch.manual_seed(seed)
    sam = m.Sam(
        image_encoder=m.ImageEncoderViT(depth=2, embed_dim=32, img_size=64, mlp_ratio=4,
                                        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=2,
                                        patch_size=8, qkv_bias=True, use_rel_pos=True,
                                        global_attn_indexes=[1], window_size=4, out_chans=32),
        prompt_encoder=m.PromptEncoder(embed_dim=32, image_embedding_size=(8, 8), input_image_size=(64, 64),
                                       mask_in_chans=16),
        mask_decoder=m.MaskDecoder(num_multimask_outputs=3,
                                   transformer=m.TwoWayTransformer(depth=2, embedding_dim=32, mlp_dim=64,
                                                                   num_heads=2),
                                   transformer_dim=32, iou_head_depth=3, iou_head_hidden_dim=32),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375]).eval()
    with torch.no_grad():  # every weight random and non-trivial (zero-init rel-pos etc. too)
        for p in sam.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    return sam


def test_renamed_model_matches_meta_reference():
    meta = _tiny_meta_sam()
    hf = build_sam(None, "tiny")
    load_meta_state_dict(hf, meta.state_dict())
    hf.eval()
    x = torch.randn(2, 3, 64, 64)
    pts = torch.tensor([[[10.0, 20.0]], [[40.0, 5.0]], [[33.0, 50.0]]])      # 3 prompts, 1 point each
    with torch.no_grad():
        emb_meta = meta.image_encoder(x)
        emb_hf = hf.vision_encoder(x).last_hidden_state
        torch.testing.assert_close(emb_hf, emb_meta, rtol=1e-4, atol=1e-5)
        for multimask in (False, True):
            sparse, dense = meta.prompt_encoder(points=(pts, torch.ones(3, 1)), boxes=None, masks=None)
            # Meta's loop: one image, prompts as its batch
            low_meta, iou_meta = meta.mask_decoder(image_embeddings=emb_meta[:1],
                                                   image_pe=meta.prompt_encoder.get_dense_pe(),
                                                   sparse_prompt_embeddings=sparse,
                                                   dense_prompt_embeddings=dense, multimask_output=multimask)
            out = hf(image_embeddings=emb_hf[:1], input_points=pts[None],
                     input_labels=torch.ones(1, 3, 1, dtype=torch.long), multimask_output=multimask)
            torch.testing.assert_close(out.pred_masks[0], low_meta, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(out.iou_scores[0], iou_meta, rtol=1e-4, atol=1e-5)
            assert torch.equal(out.pred_masks[0] > 0, low_meta > 0)


def test_pth_file_loads_strictly_through_build_sam(tmp_path):
    meta = _tiny_meta_sam(seed=1)
    path = tmp_path / "sam_tiny.pth"
    torch.save(meta.state_dict(), path)
    model = build_sam(path, "tiny")
    ours = model.state_dict()
    assert torch.equal(ours["vision_encoder.layers.1.attn.rel_pos_h"],
                       meta.state_dict()["image_encoder.blocks.1.attn.rel_pos_h"])
    assert torch.equal(ours["mask_decoder.iou_prediction_head.proj_out.weight"],
                       meta.state_dict()["mask_decoder.iou_prediction_head.layers.2.weight"])
    assert torch.equal(ours["shared_image_embedding.positional_embedding"],
                       meta.state_dict()["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"])


def test_unused_and_missing_keys_are_named():
    state = _tiny_meta_sam().state_dict()
    extra = dict(state)
    extra["image_encoder.blocks.0.attn.surprise"] = torch.zeros(1)
    with pytest.raises(AimsError, match="image_encoder.blocks.0.attn.surprise"):
        rename_meta_state_dict(extra)
    short = {k: v for k, v in state.items() if not k.startswith("mask_decoder.iou_prediction_head.layers.1")}
    with pytest.raises(AimsError, match=r"missing from the file: mask_decoder\.iou_prediction_head\.layers\.0"):
        load_meta_state_dict(build_sam(None, "tiny"), short)
    with pytest.raises(AimsError, match="shape mismatches"):
        load_meta_state_dict(build_sam(None, "tiny"),
                             {**state, "image_encoder.pos_embed": torch.zeros(1, 4, 4, 32)})


def test_not_a_checkpoint_and_hf_folder(tmp_path):
    bad = tmp_path / "sam_vit_b.pth"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(AimsError, match="cannot read"):
        build_sam(bad, "tiny")
    with pytest.raises(AimsError, match="does not exist"):
        build_sam(tmp_path / "absent.pth", "tiny")
    model = build_sam(None, "tiny")
    model.save_pretrained(tmp_path / "hf")
    again = build_sam(tmp_path / "hf")
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k
