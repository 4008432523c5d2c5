"""Batched prompt decoding vs one prompt at a time (the reference code's loop).

Same model, same image embeddings, same run: decode P instance clicks of one image either in
one call (transformers' point_batch dimension, what `aims baseline predict` does) or in P
calls of one prompt each. Also times the whole predict path (encoder once per image +
batched decode) and, with --train, LoRA training steps, in images/s and peak GPU memory.

    python benchmarks/bench_decode.py                              # CPU, tiny + ViT-B decoder
    python benchmarks/bench_decode.py --device cuda --size vit-b --dtype bf16 --train
    python benchmarks/bench_decode.py --device cuda --size vit-b --dtype fp32 --train

On CPU the full ViT-B encoder at 1024² costs seconds per image, so the CPU run times the
decoder alone at ViT-B size (random weights; speed does not depend on the values).
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import nullcontext

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn, device, repeat: int) -> float:
    fn()
    _sync(device)
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    _sync(device)
    return (time.perf_counter() - t) / repeat


def bench_decode(size: str, device: torch.device, dtype: str, prompts: int, repeat: int) -> dict:
    from aims.baselines.model import ModelSpec, build_model

    model = build_model(ModelSpec(size, "simcmf", "lora", in_channels=1), device=device).eval()
    vc = model.sam.config.vision_config
    side = vc.image_size // vc.patch_size
    emb = torch.randn(1, model.sam.config.mask_decoder_config.hidden_size, side, side, device=device)
    pts = torch.rand(1, prompts, 1, 2, device=device) * vc.image_size
    lab = torch.ones(1, prompts, 1, dtype=torch.long, device=device)
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if (device.type == "cuda" and dtype == "bf16") else nullcontext()

    def batched():
        with torch.no_grad(), ctx:
            model.decode(emb, pts, lab)

    def looped():
        with torch.no_grad(), ctx:
            for i in range(prompts):
                model.decode(emb, pts[:, i:i + 1], lab[:, i:i + 1])

    with torch.no_grad():
        a, _ = model.decode(emb, pts, lab)
        b = torch.cat([model.decode(emb, pts[:, i:i + 1], lab[:, i:i + 1])[0] for i in range(prompts)], 1)
    agree = float((a > 0).eq(b > 0).float().mean())
    tb, tl = _time(batched, device, repeat), _time(looped, device, repeat)
    return {"size": size, "device": str(device), "dtype": dtype, "prompts": prompts,
            "batched_ms": tb * 1e3, "looped_ms": tl * 1e3, "speedup": tl / tb, "mask_agreement": agree}


def bench_predict(size: str, device: torch.device, dtype: str, prompts: int, images: int, batch: int) -> dict:
    from aims.baselines.model import ModelSpec, build_model

    model = build_model(ModelSpec(size, "simcmf", "lora", in_channels=1), device=device).eval()
    s = model.image_size
    x = torch.randn(batch, 1, s, s, device=device)
    pts = torch.rand(1, prompts, 1, 2, device=device) * s
    lab = torch.ones(1, prompts, 1, dtype=torch.long, device=device)
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if (device.type == "cuda" and dtype == "bf16") else nullcontext()
    out = {}
    for mode in ("batched", "looped"):
        def run():
            with torch.no_grad(), ctx:
                emb = model.encode(x)
                for k in range(batch):
                    if mode == "batched":
                        model.decode(emb[k:k + 1], pts, lab)
                    else:
                        for i in range(prompts):
                            model.decode(emb[k:k + 1], pts[:, i:i + 1], lab[:, i:i + 1])
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t = _time(run, device, max(1, images // batch))
        out[f"predict_img_s_{mode}"] = batch / t
        if device.type == "cuda":
            out[f"predict_peak_gib_{mode}"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def bench_train(size: str, device: torch.device, dtype: str, steps: int, batch: int) -> dict:
    from aims.baselines.model import ModelSpec, build_model
    from aims.baselines.losses import dice_ce_loss  # the loss both recipes train with

    model = build_model(ModelSpec(size, "simcmf", "lora", in_channels=1), device=device).train()
    s, low = model.image_size, model.low_res_size
    x = torch.randn(batch, 1, s, s, device=device)
    pts = torch.rand(batch, 1, 1, 2, device=device) * s
    lab = torch.ones(batch, 1, 1, dtype=torch.long, device=device)
    tgt = (torch.rand(batch, 1, low, low, device=device) > 0.5).float()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-4)
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if (device.type == "cuda" and dtype == "bf16") else nullcontext()

    def step():
        with ctx:
            logits, _ = model(x, pts, lab)
            loss = dice_ce_loss(logits[:, 0].float(), tgt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t = _time(step, device, steps)
    out = {"train_img_s": batch / t}
    if device.type == "cuda":
        out["train_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", default=None, help="tiny, vit-b, vit-l, vit-h (default: tiny and vit-b on CPU)")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--prompts", type=int, default=32, help="instance clicks per image")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--images", type=int, default=64, help="images timed for predict (GPU)")
    ap.add_argument("--batch", type=int, default=8, help="images per encoder call / train step")
    ap.add_argument("--train", action="store_true", help="also time LoRA training steps")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sizes = [args.size] if args.size else ["tiny", "vit-b"]
    results = []
    for size in sizes:
        r = bench_decode(size, device, args.dtype, args.prompts, args.repeat)
        if device.type == "cuda" or size == "tiny":
            r.update(bench_predict(size, device, args.dtype, args.prompts, args.images, args.batch))
            if args.train:
                r.update(bench_train(size, device, args.dtype, args.repeat, min(args.batch, 4)))
        results.append(r)
        print(json.dumps(r))
    if device.type == "cuda":
        print(f"device: {torch.cuda.get_device_name()}")


if __name__ == "__main__":
    main()
