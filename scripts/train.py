"""Train one denoiser on prepared patch pairs; keeps the best weights as safetensors.

    python -m scripts.train --model model_unet --minutes 60          # a time budget
    python -m scripts.train --model model_unet --minutes 90 --resume # extend it later
    python -m scripts.train --model model_unet --minutes 60 --init models/weights  # fine-tune

An "epoch" is ``--epoch-patches`` training patches followed by validation, so CPU runs
report and checkpoint regularly. The learning rate follows a cosine schedule over the
budget (minutes when given, else epochs). ``runs/<model>/last.pt`` holds the resumable
state (tensors and numbers only, loaded with ``weights_only=True``); ``log.csv`` the curve.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch.utils.data import DataLoader
from tqdm import tqdm

from models import MODELS, WEIGHTS_DIR, build_model, save_weights, weight_paths

from .dataset import PatchPairs, read_meta

REPO = Path(__file__).resolve().parent.parent


@dataclass
class TrainConfig:
    """Everything a training run depends on."""

    model: str
    data: Path = REPO / "data"
    run_dir: Path | None = None
    weights_dir: Path = WEIGHTS_DIR
    arch: dict[str, Any] = field(default_factory=dict)
    crop: int = 64
    batch: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    loss: str = "charbonnier"
    minutes: float | None = None
    epochs: int = 100
    epoch_patches: int = 4096
    val_limit: int | None = 256
    threads: int | None = None
    seed: int = 0
    resume: bool = False
    init: Path | None = None

    def __post_init__(self) -> None:
        self.data, self.weights_dir = Path(self.data), Path(self.weights_dir)
        self.init = Path(self.init) if self.init else None
        self.run_dir = Path(self.run_dir) if self.run_dir else REPO / "runs" / self.model


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Charbonnier (smooth L1) loss: mean of sqrt((pred - target)^2 + eps^2)."""
    return torch.sqrt((pred - target) ** 2 + eps**2).mean()


LOSSES = {"charbonnier": charbonnier, "l1": F.l1_loss}


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of [0, 1] tensors shaped BxCxHxW."""
    mse = ((pred.clamp(0, 1) - target) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-12))


def pick_device(threads: int | None) -> torch.device:
    """CUDA when present, else the CPU with ``threads`` (default: all cores) intra-op threads."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    torch.set_num_threads(threads or os.cpu_count() or 1)
    return torch.device("cpu")


@torch.inference_mode()
def validate(model: torch.nn.Module, loader: DataLoader, loss_fn, device: torch.device) -> tuple[float, float]:
    """Mean loss and mean per-patch PSNR of ``model`` over ``loader``."""
    model.eval()
    losses, scores = [], []
    for noisy, clean in loader:
        noisy, clean = noisy.to(device), clean.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = model(noisy).float()
        losses.append(float(loss_fn(out, clean)) * len(noisy))
        scores.append(psnr(out, clean))
    model.train()
    count = sum(len(s) for s in scores)
    return sum(losses) / count, float(torch.cat(scores).mean())


def cosine_lr(base: float, progress: float, warmup: float = 0.02) -> float:
    """Linear warm-up over the first ``warmup`` of the run, then cosine decay to 1 % of ``base``."""
    if progress < warmup:
        return base * (progress + 1e-3) / warmup
    t = min((progress - warmup) / (1 - warmup), 1.0)
    return base * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t)))


class StopFlag:
    """Set by SIGTERM/SIGINT so the loop finishes its step, checkpoints and exits cleanly."""

    def __init__(self) -> None:
        self.raised = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._raise)

    def _raise(self, *_: object) -> None:
        self.raised = True


def train(cfg: TrainConfig) -> dict:
    """Run (or resume) training as configured; returns the summary written beside the weights."""
    device = pick_device(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, **cfg.arch).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = LOSSES[cfg.loss]
    train_set = PatchPairs(cfg.data / "train", crop=cfg.crop)
    val_set = PatchPairs(cfg.data / "val", augment=False, limit=cfg.val_limit)
    sampler = torch.utils.data.RandomSampler(train_set, replacement=True, num_samples=cfg.epoch_patches)
    train_loader = DataLoader(train_set, batch_size=cfg.batch, sampler=sampler, drop_last=True)
    val_loader = DataLoader(val_set, batch_size=32)
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path, log_path = cfg.run_dir / "last.pt", cfg.run_dir / "log.csv"
    state = {"epoch": 0, "step": 0, "patches": 0, "elapsed": 0.0, "best_psnr": -math.inf, "warm_start": {}}
    if cfg.resume and checkpoint_path.exists():
        saved = torch.load(checkpoint_path, map_location=device, weights_only=True)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["rng"])
        state = saved["state"]
    else:
        log_path.unlink(missing_ok=True)
        if cfg.init is not None:
            state["warm_start"] = warm_start(model, cfg.model, cfg.init)
    _, noisy_psnr = validate(torch.nn.Identity(), val_loader, loss_fn, device)
    total_steps = cfg.epochs * (cfg.epoch_patches // cfg.batch)
    stop = StopFlag()
    summary: dict = {}

    def progress() -> float:
        if cfg.minutes is not None:
            return state["elapsed"] / (cfg.minutes * 60)
        return state["step"] / total_steps

    model.train()
    while state["epoch"] < cfg.epochs and progress() < 1 and not stop.raised:
        epoch_loss, seen = 0.0, 0
        bar = tqdm(train_loader, desc=f"{cfg.model} epoch {state['epoch'] + 1}", unit="batch", leave=False)
        for noisy, clean in bar:
            started = time.perf_counter()
            lr = cosine_lr(cfg.lr, progress())
            for group in optimizer.param_groups:
                group["lr"] = lr
            noisy = noisy.to(device).contiguous(memory_format=torch.channels_last)
            clean = clean.to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss = loss_fn(model(noisy).float(), clean)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            state["step"] += 1
            state["patches"] += len(noisy)
            state["elapsed"] += time.perf_counter() - started
            value = loss.item()
            epoch_loss, seen = epoch_loss + value * len(noisy), seen + len(noisy)
            bar.set_postfix(loss=f"{value:.4f}", lr=f"{lr:.1e}")
            if progress() >= 1 or stop.raised:
                break
        bar.close()
        state["epoch"] += 1
        val_loss, val_psnr = validate(model, val_loader, loss_fn, device)
        row = {
            "epoch": state["epoch"], "step": state["step"], "patches": state["patches"],
            "elapsed_s": round(state["elapsed"], 1), "lr": lr, "train_loss": epoch_loss / max(seen, 1),
            "val_loss": val_loss, "val_psnr": val_psnr,
        }
        with log_path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(row))
            if handle.tell() == 0:
                writer.writeheader()
            writer.writerow(row)
        print(f"{cfg.model} epoch {state['epoch']}: loss {row['train_loss']:.4f}, val PSNR {val_psnr:.2f} dB "
              f"(noisy {noisy_psnr:.2f}), {state['patches']} patches, {state['elapsed'] / 60:.1f} min", flush=True)
        if val_psnr > state["best_psnr"]:
            state["best_psnr"] = val_psnr
            summary = {
                "model": cfg.model, "architecture": MODELS[cfg.model].architecture.__name__,
                "config": {**MODELS[cfg.model].config, **cfg.arch},
                "training": {
                    "epochs": state["epoch"], "patches_seen": state["patches"], "steps": state["step"],
                    "val_psnr": round(val_psnr, 3), "val_psnr_noisy": round(noisy_psnr, 3),
                    "wall_minutes": round(state["elapsed"] / 60, 1), "device": device_name(device),
                    "crop": cfg.crop, "batch": cfg.batch, "loss": cfg.loss, "lr": cfg.lr,
                    "train_pairs": len(train_set), "val_pairs": len(val_set),
                    "sigma_eff_val": round(read_meta(cfg.data / "val").get("sigma_eff", float("nan")), 2),
                    **({"warm_start": state["warm_start"]} if state.get("warm_start") else {}),
                },
            }
            save_weights(cfg.model, model, summary, cfg.weights_dir)
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "rng": torch.get_rng_state(), "state": state}, checkpoint_path)
    return summary


def warm_start(model: torch.nn.Module, name: str, weights_dir: Path) -> dict:
    """Load ``name``'s saved weights from ``weights_dir`` into ``model``; returns their training summary.

    The architecture configuration must match: ``load_state_dict`` refuses tensors of another shape.
    """
    tensors_path, info_path = weight_paths(name, weights_dir)
    model.load_state_dict(load_file(str(tensors_path)))
    return json.loads(info_path.read_text()).get("training", {})


def training_runs(training: dict) -> list[dict]:
    """A saved training summary and the warm starts it grew from, oldest first."""
    runs = []
    while training:
        runs.insert(0, training)
        training = training.get("warm_start", {})
    return runs


def summary_table(weights_dir: Path = WEIGHTS_DIR) -> str:
    """A Markdown table of every saved model's training, warm starts added up, from the JSON beside its weights."""
    lines = [
        "| model | width / depth | runs | patches seen | crop | wall minutes | device | val PSNR (noisy) |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for name, spec in MODELS.items():
        _, info_path = weight_paths(name, weights_dir)
        if not info_path.exists():
            continue
        info = json.loads(info_path.read_text())
        runs = training_runs(info.get("training", {}))
        last = runs[-1]
        lines.append(
            f"| {spec.title} | {info['config']['width']} / {info['config']['depth']} | {len(runs)} "
            f"| {sum(r['patches_seen'] for r in runs):,} | {last['crop']} | {sum(r['wall_minutes'] for r in runs):.0f} "
            f"| {last['device']} | {last['val_psnr']:.2f} dB ({last['val_psnr_noisy']:.2f} dB) |"
        )
    return "\n".join(lines) + "\n"


def device_name(device: torch.device) -> str:
    """A readable name of the training device."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and train."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODELS))
    parser.add_argument("--summary", action="store_true", help="print the saved models' training table and exit")
    parser.add_argument("--data", type=Path, default=TrainConfig.data)
    parser.add_argument("--run-dir", type=Path)
    parser.add_argument("--weights-dir", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--width", type=int, help="override the registry's width")
    parser.add_argument("--depth", type=int, help="override the registry's depth")
    for name in ("crop", "batch", "epochs", "epoch_patches", "val_limit", "threads", "seed"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(TrainConfig, name))
    for name in ("lr", "weight_decay", "minutes"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(TrainConfig, name))
    parser.add_argument("--loss", choices=sorted(LOSSES), default=TrainConfig.loss)
    parser.add_argument("--resume", action="store_true", help="continue RUN_DIR/last.pt")
    parser.add_argument("--init", type=Path, help="start from the weights saved in this folder (fine-tuning)")
    args = vars(parser.parse_args(argv))
    if args.pop("summary"):
        print(summary_table(args["weights_dir"]), end="")
        return
    if args["model"] is None:
        parser.error("--model is required")
    arch = {k: args.pop(k) for k in ("width", "depth") if args[k] is not None}
    args.pop("width", None), args.pop("depth", None)
    summary = train(TrainConfig(arch=arch, **args))
    print(summary.get("training", "no epoch finished"))


if __name__ == "__main__":
    main()
