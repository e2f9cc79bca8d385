"""Train one denoiser on clean photographs degraded on the fly; keeps the best weights as safetensors.

    python -m scripts.training.train --model model_unet --minutes 60          # a time budget
    python -m scripts.training.train --model model_unet --minutes 90 --resume # extend it later
    python -m scripts.training.train --model model_unet --minutes 60 --init models/weights  # fine-tune
    python -m scripts.training.train --model model_unet --minutes 150 --init models/weights --width 24  # widen, then train
    python -m scripts.training.train --model model_arunet --width 24 --init models/weights --init-model model_runet  # graft CBAM
    python -m scripts.training.train --model model_unet --minutes 30 --init models/weights --crops 128 \
        --lr 2e-4 --hybrid-share 0.5                                 # lean towards the hybrid model
    python -m scripts.training.train --model model_unet --measure             # loader vs step patches/s

Every batch is a fresh draw of random crops from ``--train-src`` degraded by ``--noise`` (the
blind mixture by default, ``models.degradations``; ``--hybrid-share`` changes the share of its
patches that get the seed's hybrid model, ``--awgn-share`` the share of the rest that get white
Gaussian noise alone, for training only), so no two batches share their
noise. Crops grow from the first to the last of ``--crops`` over the run (progressive training)
at a constant number of pixels per batch. An "epoch" is ``--epoch-patches`` patches followed by
validation on fixed crops of ``--val-src``; the raw and the EMA weights are both scored and
the better is kept. A fine-tune (``--init``) first scores the weights it starts from and keeps
an epoch only if it beats them; saved weights narrower than ``--width`` are widened first so the
wider network starts out computing exactly what they compute (``models.widening``), and
``--init-model model_runet`` starts the CBAM network from the Residual U-Net's weights with its
attention grafted on, computing exactly what they compute too (``models.grafting``). bf16
autocast runs with ``--precision bf16``; ``auto`` (the default) times a few training steps in
fp32 and in bf16 where bf16 is native and trains in the faster (bf16 is slower than fp32 on
some CPUs that have it); ``--measure`` prints both step rates beside the loader's.
The learning rate follows a cosine schedule over the budget (minutes when given, else epochs).
``runs/<model>/last.pt`` holds the resumable state (tensors and numbers only, loaded with
``weights_only=True``); ``log.csv`` the curve.
"""
from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from models import MODELS, WEIGHTS_DIR, build_model, save_weights, weight_paths
from models.degradations import PRESETS, BlindNoiseConfig, Degradation
from models.grafting import GRAFTS, graft_attention
from models.precision import PRECISIONS, native_bf16, wants_bf16
from models.registry import read_weights
from models.widening import widen
from scripts.evaluation.metrics import psnr
from scripts.paths import RUNS_DIR, corpus_split, split_argument
from scripts.training.dataset import DegradedCrops, fixed_pairs, refuse_shared_images, usable_images

NOISES: dict[str, Degradation] = {"blind": BlindNoiseConfig(), **PRESETS}
# The blind mixture's shares a run may override, each as ``--hybrid-share`` etc.
MIXTURE_SHARES = ("hybrid_share", "awgn_share")


@dataclass
class TrainConfig:
    """Everything a training run depends on."""

    model: str
    train_src: Path | None = None
    val_src: Path | None = None
    noise: str = "blind"
    hybrid_share: float | None = None
    awgn_share: float | None = None
    run_dir: Path | None = None
    weights_dir: Path = WEIGHTS_DIR
    arch: dict[str, Any] = field(default_factory=dict)
    crops: tuple[int, ...] = (64, 128)
    batch: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    loss: str = "charbonnier"
    ema: float = 0.999
    precision: str = "auto"
    minutes: float | None = None
    epochs: int = 100
    epoch_patches: int = 4096
    val_patches: int = 256
    val_crop: int = 128
    workers: int = 1
    threads: int | None = None
    seed: int = 0
    resume: bool = False
    init: Path | None = None
    init_model: str | None = None

    def __post_init__(self) -> None:
        self.train_src = Path(self.train_src) if self.train_src else corpus_split("train")
        self.val_src = Path(self.val_src) if self.val_src else corpus_split("val")
        self.weights_dir = Path(self.weights_dir)
        self.init = Path(self.init) if self.init else None
        self.run_dir = Path(self.run_dir) if self.run_dir else RUNS_DIR / self.model
        self.crops = tuple(self.crops)
        if self.noise not in NOISES:
            raise ValueError(f"unknown noise {self.noise!r}; choose from {', '.join(NOISES)}")
        for name, share in self.mixture_shares().items():
            if self.noise != "blind" or not 0 <= share <= 1:
                raise ValueError(f"--{name.replace('_', '-')} {share} needs the blind mixture and a share in [0, 1]")
        if self.minutes is not None and self.minutes <= 0:
            raise ValueError(f"a budget of {self.minutes} minutes trains no step")
        if self.epochs < 1 or self.epoch_patches < self.batch_for(self.crops[0]):
            raise ValueError(
                f"{self.epochs} epochs of {self.epoch_patches} patches give no step at batch {self.batch_for(self.crops[0])}"
            )

    def mixture_shares(self) -> dict[str, float]:
        """The blind mixture's shares this run overrides (``MIXTURE_SHARES`` given on the command line)."""
        return {name: share for name in MIXTURE_SHARES if (share := getattr(self, name)) is not None}

    def training_noise(self) -> Degradation:
        """What training patches are degraded with: ``noise``, with the mixture's shares overridden if given."""
        shares = self.mixture_shares()
        return replace(NOISES[self.noise], **shares) if shares else NOISES[self.noise]

    def batch_for(self, crop: int) -> int:
        """Patches per step at ``crop``: ``batch`` at the first crop, then as many pixels per step."""
        return max(1, self.batch * self.crops[0] ** 2 // crop**2)

    def crop_at(self, progress: float) -> int:
        """The crop side for a run this far through its budget (equal shares per crop)."""
        return self.crops[min(int(progress * len(self.crops)), len(self.crops) - 1)]


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Charbonnier (smooth L1) loss: mean of sqrt((pred - target)^2 + eps^2)."""
    return torch.sqrt((pred - target) ** 2 + eps**2).mean()


LOSSES = {"charbonnier": charbonnier, "l1": F.l1_loss}


def pick_device(threads: int | None) -> torch.device:
    """CUDA when present, else the CPU with ``threads`` (default: all cores) intra-op threads."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    torch.set_num_threads(threads or os.cpu_count() or 1)
    return torch.device("cpu")


def to_batch(pixels: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 BxHxWx3 pixels as a float BxCxHxW channels-last tensor in [0, 1] on ``device``."""
    return pixels.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)


@torch.inference_mode()
def validate(model: torch.nn.Module, pairs: tuple[torch.Tensor, torch.Tensor], loss_fn, device: torch.device,
             bf16: bool, batch: int = 32) -> tuple[float, float]:
    """Mean loss and mean per-patch PSNR of ``model`` over the fixed validation pairs."""
    was_training = model.training
    model.eval()
    losses, scores = [], []
    for first in range(0, len(pairs[0]), batch):
        noisy, clean = (to_batch(t[first:first + batch], device) for t in pairs)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(noisy).float()
        losses.append(float(loss_fn(out, clean)) * len(noisy))
        scores += [psnr(c, o, data_range=1.0) for c, o in zip(clean.cpu().numpy(), out.clamp(0, 1).cpu().numpy())]
    model.train(was_training)
    return sum(losses) / len(pairs[0]), float(np.mean(scores))


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

    def _raise(self, *_: object) -> None:
        self.raised = True

    @contextmanager
    def installed(self) -> Iterator[StopFlag]:
        """Catch SIGTERM and SIGINT while the block runs, then restore the previous handlers."""
        previous = {sig: signal.signal(sig, self._raise) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def ignore_stop_signals(_worker: int) -> None:
    """In a loader process: leave SIGTERM and SIGINT to the training process, which stops the loader itself.

    A signal sent to the whole process group (Ctrl-C, ``kill -- -PGID``, a container's stop) would
    otherwise end the loader first and fail the run before its ``StopFlag`` could checkpoint.
    """
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)


class Batches:
    """Training batches at the crop the run's progress asks for; the loader is rebuilt when the crop changes."""

    def __init__(self, cfg: TrainConfig, stream: int) -> None:
        self.cfg, self.stream = cfg, stream
        self.images = usable_images(cfg.train_src, max(cfg.crops))
        self.crop: int | None = None
        self.iterator: Iterator | None = None

    def next(self, progress: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The next uint8 ``(noisy, clean)`` batch for a run ``progress`` through its budget."""
        crop = self.cfg.crop_at(progress)
        if crop != self.crop:
            self.crop, self.stream = crop, self.stream + 1
            dataset = DegradedCrops(self.images, crop, self.cfg.batch_for(crop), self.cfg.training_noise(),
                                    self.cfg.seed, self.stream)
            workers = self.cfg.workers
            self.iterator = iter(DataLoader(dataset, batch_size=None, num_workers=workers,
                                            pin_memory=torch.cuda.is_available(),
                                            prefetch_factor=4 if workers else None,
                                            persistent_workers=False,
                                            worker_init_fn=ignore_stop_signals if workers else None))
        return next(self.iterator)


class Trainer:
    """The model, its EMA copy, optimiser and counters of one run, with checkpointing."""

    def __init__(self, cfg: TrainConfig, device: torch.device, bf16: bool | None = None) -> None:
        self.cfg, self.device = cfg, device
        self.bf16 = wants_bf16(cfg.precision, device) if bf16 is None else bf16
        torch.manual_seed(cfg.seed)
        self.model = build_model(cfg.model, **cfg.arch).to(device).to(memory_format=torch.channels_last)
        self.ema = copy.deepcopy(self.model).requires_grad_(False)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.loss_fn = LOSSES[cfg.loss]
        self.state: dict[str, Any] = {"epoch": 0, "step": 0, "patches": 0, "elapsed": 0.0,
                                      "best_psnr": -math.inf, "warm_start": {}}
        self.checkpoint_path = cfg.run_dir / "last.pt"

    def restore(self) -> None:
        """Resume from the run's checkpoint, or start fresh (from ``init`` weights when given)."""
        if self.cfg.resume and self.checkpoint_path.exists():
            saved = torch.load(self.checkpoint_path, map_location=self.device, weights_only=True)
            self.model.load_state_dict(saved["model"])
            self.ema.load_state_dict(saved["ema"])
            self.optimizer.load_state_dict(saved["optimizer"])
            torch.set_rng_state(saved["rng"])
            self.state = saved["state"]
            return
        (self.cfg.run_dir / "log.csv").unlink(missing_ok=True)
        if self.cfg.init is not None:
            self.state["warm_start"] = warm_start(self.model, self.cfg.model, self.cfg.init, self.cfg.init_model)
            self.ema.load_state_dict(self.model.state_dict())

    def progress(self) -> float:
        """How far the run is through its budget, from 0 to 1."""
        if self.cfg.minutes is not None:
            return self.state["elapsed"] / (self.cfg.minutes * 60)
        total = self.cfg.epochs * self.cfg.epoch_patches
        return self.state["patches"] / total

    def step(self, noisy: torch.Tensor, clean: torch.Tensor) -> float:
        """One optimiser step on a uint8 batch at the scheduled learning rate; returns the loss."""
        lr = cosine_lr(self.cfg.lr, self.progress())
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        noisy, clean = to_batch(noisy, self.device), to_batch(clean, self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            loss = self.loss_fn(self.model(noisy).float(), clean)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(list(self.ema.parameters()), list(self.model.parameters()), 1 - self.cfg.ema)
        self.state["step"] += 1
        self.state["patches"] += len(noisy)
        return loss.item()

    def save_checkpoint(self) -> None:
        """Write everything needed to resume (tensors and numbers only)."""
        torch.save({"model": self.model.state_dict(), "ema": self.ema.state_dict(),
                    "optimizer": self.optimizer.state_dict(), "rng": torch.get_rng_state(),
                    "state": self.state}, self.checkpoint_path)


def append_log(path: Path, row: dict) -> None:
    """Append one row to the run's CSV curve (header on the first)."""
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(row))
        if handle.tell() == 0:
            writer.writeheader()
        writer.writerow(row)


def run_summary(cfg: TrainConfig, trainer: Trainer, val_psnr: float, noisy_psnr: float, weights: str) -> dict:
    """The JSON written beside the weights: architecture, configuration and how they were trained."""
    state = trainer.state
    return {
        "model": cfg.model, "architecture": MODELS[cfg.model].architecture.__name__,
        "config": {**MODELS[cfg.model].config, **cfg.arch},
        "training": {
            "epochs": state["epoch"], "patches_seen": state["patches"], "steps": state["step"],
            "val_psnr": round(val_psnr, 3), "val_psnr_noisy": round(noisy_psnr, 3), "weights": weights,
            "wall_minutes": round(state["elapsed"] / 60, 1),
            "patches_per_s": round(state["patches"] / max(state["elapsed"], 1e-9), 1),
            "device": device_name(trainer.device), "precision": "bf16" if trainer.bf16 else "fp32",
            "noise": cfg.noise, **cfg.mixture_shares(),
            "crops": list(cfg.crops), "batch": cfg.batch, "loss": cfg.loss, "lr": cfg.lr,
            "ema": cfg.ema, "val_patches": cfg.val_patches, "val_crop": cfg.val_crop,
            **({"warm_start": state["warm_start"]} if state.get("warm_start") else {}),
        },
    }


def train(cfg: TrainConfig) -> dict:
    """Run (or resume) training as configured; returns the summary written beside the best weights."""
    device = pick_device(cfg.threads)
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(cfg, device, training_bf16(cfg, device))
    trainer.restore()
    val_images = usable_images(cfg.val_src, cfg.val_crop)
    batches = Batches(cfg, stream=trainer.state["step"])
    refuse_shared_images(batches.images, val_images)
    val_pairs = fixed_pairs(val_images, cfg.val_crop, cfg.val_patches, NOISES[cfg.noise], seed=cfg.seed + 1)
    _, noisy_psnr = validate(torch.nn.Identity(), val_pairs, trainer.loss_fn, device, False)
    if trainer.state["epoch"] == 0 and cfg.init is not None:
        _, trainer.state["best_psnr"] = validate(trainer.model, val_pairs, trainer.loss_fn, device, trainer.bf16)
        print(f"{cfg.model} starts from {cfg.init}: val PSNR {trainer.state['best_psnr']:.2f} dB", flush=True)
    state, summary = trainer.state, {}
    trainer.model.train()
    with StopFlag().installed() as stop:
        while state["epoch"] < cfg.epochs and trainer.progress() < 1 and not stop.raised:
            epoch_loss, seen, target = 0.0, 0, state["patches"] + cfg.epoch_patches
            while state["patches"] < target and trainer.progress() < 1 and not stop.raised:
                started = time.perf_counter()
                noisy, clean = batches.next(trainer.progress())
                value = trainer.step(noisy, clean)
                state["elapsed"] += time.perf_counter() - started
                epoch_loss, seen = epoch_loss + value * len(noisy), seen + len(noisy)
            state["epoch"] += 1
            scores = {name: validate(net, val_pairs, trainer.loss_fn, device, trainer.bf16)
                      for name, net in (("raw", trainer.model), ("ema", trainer.ema))}
            best_name = max(scores, key=lambda name: scores[name][1])
            val_loss, val_psnr = scores[best_name]
            row = {
                "epoch": state["epoch"], "step": state["step"], "patches": state["patches"],
                "elapsed_s": round(state["elapsed"], 1), "crop": batches.crop,
                "lr": cosine_lr(cfg.lr, trainer.progress()), "train_loss": epoch_loss / max(seen, 1),
                "val_loss": val_loss, "val_psnr": val_psnr,
                "val_psnr_raw": scores["raw"][1], "val_psnr_ema": scores["ema"][1],
            }
            append_log(cfg.run_dir / "log.csv", row)
            print(f"{cfg.model} epoch {state['epoch']}: loss {row['train_loss']:.4f}, val PSNR raw "
                  f"{scores['raw'][1]:.2f} / EMA {scores['ema'][1]:.2f} dB (noisy {noisy_psnr:.2f}), crop "
                  f"{batches.crop}, {state['patches']} patches, {state['patches'] / max(state['elapsed'], 1e-9):.0f}/s, "
                  f"{state['elapsed'] / 60:.1f} min", flush=True)
            if val_psnr > state["best_psnr"]:
                state["best_psnr"] = val_psnr
                summary = run_summary(cfg, trainer, val_psnr, noisy_psnr, best_name)
                best = trainer.model if best_name == "raw" else trainer.ema
                save_weights(cfg.model, best, summary, cfg.weights_dir)
            trainer.save_checkpoint()
    return summary


Batch = tuple[torch.Tensor, torch.Tensor]


def step_rates(cfg: TrainConfig, device: torch.device, held: list[Batch], rounds: int = 1) -> dict[str, float]:
    """Training-step patches per second of a fresh model in fp32 and in bf16 on ``held`` batches.

    One warm-up step each, then ``rounds`` passes over the batches, the two precisions
    alternating so that background load hits both alike; the best pass of each counts.
    """
    trainers = {"fp32": Trainer(cfg, device, bf16=False), "bf16": Trainer(cfg, device, bf16=True)}
    for trainer in trainers.values():
        trainer.step(*held[0])
    best = dict.fromkeys(trainers, math.inf)
    for _ in range(rounds):
        for key, trainer in trainers.items():
            started = time.perf_counter()
            for noisy, clean in held:
                trainer.step(noisy, clean)
            if device.type == "cuda":
                torch.cuda.synchronize()
            best[key] = min(best[key], time.perf_counter() - started)
    patches = sum(len(noisy) for noisy, _ in held)
    return {key: patches / seconds for key, seconds in best.items()}


def blank_batches(cfg: TrainConfig, count: int) -> list[Batch]:
    """``count`` uint8 batches of random pixels at the first crop: a step's time does not depend on the content."""
    crop, generator = cfg.crops[0], torch.Generator().manual_seed(cfg.seed)
    shape = (cfg.batch_for(crop), crop, crop, 3)
    return [(torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator),
             torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)) for _ in range(count)]


def training_bf16(cfg: TrainConfig, device: torch.device, steps: int = 3, rounds: int = 2) -> bool:
    """Whether to train in bf16: as ``--precision`` asks, or for ``auto`` where bf16 is native and measured faster."""
    if cfg.precision != "auto":
        return wants_bf16(cfg.precision, device)
    if not native_bf16(device):
        return False
    rates = step_rates(cfg, device, blank_batches(cfg, steps), rounds)
    chosen = "bf16" if rates["bf16"] > rates["fp32"] else "fp32"
    print(f"precision auto: training steps at {rates['fp32']:.0f} patches/s in fp32, {rates['bf16']:.0f} in bf16: "
          f"{chosen}", flush=True)
    return chosen == "bf16"


def measure(cfg: TrainConfig, batches_timed: int = 20) -> dict[str, float | str]:
    """Patches per second of the loader alone and of the training step alone in fp32 and bf16, at the first crop.

    ``precision`` is what ``auto`` picks from these rates where bf16 is native (fp32 elsewhere).
    """
    device = pick_device(cfg.threads)
    loader = Batches(cfg, stream=0)
    started = time.perf_counter()
    held = [loader.next(0.0) for _ in range(batches_timed)]
    loader_rate = sum(len(n) for n, _ in held) / (time.perf_counter() - started)
    rates = step_rates(cfg, device, held)
    faster = "bf16" if native_bf16(device) and rates["bf16"] > rates["fp32"] else "fp32"
    return {"loader_patches_per_s": loader_rate, "step_patches_per_s_fp32": rates["fp32"],
            "step_patches_per_s_bf16": rates["bf16"], "precision": faster}


def warm_start(model: torch.nn.Module, name: str, weights_dir: Path, source: str | None = None) -> dict:
    """Load the weights of ``source`` (default ``name``) saved in ``weights_dir`` into ``model``; returns their training summary.

    Weights of a narrower network (same depth) are widened to ``model``'s width, computing the
    same function (``models.widening``); the summary then notes the width they had. The Residual
    U-Net's weights start the CBAM network by grafting its attention on (``models.grafting``), also
    function-preserving; the summary notes that too. Any other difference of configuration is
    refused (``load_state_dict`` rejects tensors of another shape).
    """
    source = source or name
    if source != name and (source, name) not in GRAFTS:
        raise ValueError(f"--init-model {source} cannot start {name}; only {', '.join(f'{a} -> {b}' for a, b in GRAFTS)}")
    tensors, info = read_weights(source, weights_dir)
    saved = {**MODELS[source].config, **info.get("config", {})}
    start = build_model(source, **saved)
    start.load_state_dict(tensors)
    notes = {}
    if saved["width"] != model.head.in_channels:
        start = widen(start, model.head.in_channels)
        notes["widened_from"] = saved["width"]
        print(f"{source}: the width-{saved['width']} weights in {weights_dir} widened to width {model.head.in_channels}",
              flush=True)
    if source != name:
        graft_attention(start, model)
        notes["grafted_from"] = source
        print(f"{name}: attention grafted onto the {source} weights in {weights_dir}", flush=True)
    else:
        model.load_state_dict(start.state_dict())
    return {**info.get("training", {}), **notes}


def training_runs(training: dict) -> list[dict]:
    """A saved training summary and the warm starts it grew from, oldest first."""
    runs = []
    while training:
        runs.insert(0, training)
        training = training.get("warm_start", {})
    return runs


def summary_table(weights_dir: Path = WEIGHTS_DIR) -> str:
    """A Markdown table of every saved model's training, warm starts added up, from the JSON beside its weights.

    Noise, crops and patches/s are the last run's; devices lists every run's, first use first.
    """
    lines = [
        "| model | width / depth | runs | patches seen | noise | crops | wall minutes | patches/s | device, precision "
        "| val PSNR (noisy) |",
        "|---|---|---:|---:|---|---|---:|---:|---|---|",
    ]
    for name, spec in MODELS.items():
        _, info_path = weight_paths(name, weights_dir)
        if not info_path.exists():
            continue
        info = json.loads(info_path.read_text())
        runs = training_runs(info.get("training", {}))
        last = runs[-1]
        crops = "/".join(str(c) for c in last.get("crops", [last.get("crop")]))
        noise = ", ".join([last.get("noise", "hybrid")] + [
            f"{key.replace('_', ' ')} {last[key]}" for key in MIXTURE_SHARES if key in last
        ])
        devices = " + ".join(dict.fromkeys(f"{r['device']}, {r.get('precision', 'fp32')}" for r in runs))
        lines.append(
            f"| {spec.title} | {info['config']['width']} / {info['config']['depth']} | {len(runs)} "
            f"| {sum(r['patches_seen'] for r in runs):,} | {noise} | {crops} "
            f"| {sum(r['wall_minutes'] for r in runs):.0f} | {last.get('patches_per_s', '-')} | {devices} "
            f"| {last['val_psnr']:.2f} dB ({last['val_psnr_noisy']:.2f} dB) |"
        )
    return "\n".join(lines) + "\n"


def device_name(device: torch.device) -> str:
    """A readable name of the training device."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and train (or print the summary table, or measure loader and step rates)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODELS))
    parser.add_argument("--summary", action="store_true", help="print the saved models' training table and exit")
    parser.add_argument("--measure", action="store_true", help="print loader and training-step patches/s and exit")
    parser.add_argument("--train-src", type=Path, help="clean training photos (default: the corpus's train/)")
    parser.add_argument("--val-src", type=Path, help="clean validation photos (default: the corpus's val/)")
    parser.add_argument("--noise", choices=list(NOISES), default=TrainConfig.noise)
    parser.add_argument("--hybrid-share", type=float, help="share of blind-mixture training patches given the hybrid model")
    parser.add_argument("--awgn-share", type=float,
                        help="share of the other blind-mixture patches given white Gaussian noise alone")
    parser.add_argument("--run-dir", type=Path)
    parser.add_argument("--weights-dir", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--width", type=int, help="override the registry's width")
    parser.add_argument("--depth", type=int, help="override the registry's depth")
    parser.add_argument("--crops", type=int, nargs="+", default=list(TrainConfig.crops), help="progressive crop sides")
    for name in ("batch", "epochs", "epoch_patches", "val_patches", "val_crop", "workers", "threads", "seed"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(TrainConfig, name))
    for name in ("lr", "weight_decay", "ema", "minutes"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(TrainConfig, name))
    parser.add_argument("--loss", choices=sorted(LOSSES), default=TrainConfig.loss)
    parser.add_argument("--precision", choices=PRECISIONS, default=TrainConfig.precision)
    parser.add_argument("--resume", action="store_true", help="continue RUN_DIR/last.pt")
    parser.add_argument("--init", type=Path, help="start from the weights saved in this folder (fine-tuning)")
    parser.add_argument("--init-model", choices=[source for source, _ in GRAFTS],
                        help="start --model from this model's weights in --init (model_runet for model_arunet: CBAM grafted on)")
    args = vars(parser.parse_args(argv))
    if args.pop("summary"):
        print(summary_table(args["weights_dir"]), end="")
        return
    if args["model"] is None:
        parser.error("--model is required")
    measuring = args.pop("measure")
    args["train_src"] = split_argument(parser, args["train_src"], "train")
    args["val_src"] = split_argument(parser, args["val_src"], "val")
    arch = {key: value for key in ("width", "depth") if (value := args.pop(key)) is not None}
    cfg = TrainConfig(arch=arch, **args)
    if measuring:
        print(json.dumps(measure(cfg)))
        return
    summary = train(cfg)
    print(summary.get("training", "no epoch finished or beat the starting weights"))


if __name__ == "__main__":
    main()
