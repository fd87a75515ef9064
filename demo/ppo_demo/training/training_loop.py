"""What every demo trainer shares: configuration, cosine schedule, EMA, resumable checkpoints, progress."""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Generic, TypeVar

import torch

logger = logging.getLogger(__name__)
ModelT = TypeVar("ModelT", bound=torch.nn.Module)


@dataclass(frozen=True)
class TrainConfig:
    steps: int
    batch: int
    lr: float
    warmup: int = 100
    ema_decay: float = 0.999
    checkpoint_every: int = 250
    seed: int = 0

    def smoke(self, steps: int = 3) -> TrainConfig:
        """The same run, a few steps long and tiny batches: what the test suite exercises."""
        return TrainConfig(steps=steps, batch=min(self.batch, 4), lr=self.lr, warmup=1, ema_decay=self.ema_decay,
                           checkpoint_every=2, seed=self.seed)

    def lr_at(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        progress = (step - self.warmup) / max(1, self.steps - self.warmup)
        return self.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


class Trainer(Generic[ModelT]):
    """Runs ``loss_fn(step) -> loss`` for ``config.steps`` steps; resumes from ``folder/checkpoint.pt``.

    The model moves to ``device``; a run is deterministic for a given device (checkpoints carry the
    random number generators' states) and a checkpoint resumes on any device."""

    def __init__(self, name: str, model: ModelT, config: TrainConfig, folder: Path,
                 device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.name, self.model, self.config, self.folder = name, model.to(self.device), config, Path(folder)
        self.ema = copy.deepcopy(self.model).requires_grad_(False)
        self.optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr,
                                           weight_decay=0.01)
        self.step = 0
        self.seconds = 0.0
        self.checkpoint = self.folder / "checkpoint.pt"
        if self.checkpoint.exists():
            state = torch.load(self.checkpoint, weights_only=False, map_location=self.device)
            if state["config"] != asdict(config):
                logger.warning("%s: checkpoint was made with another config; continuing with the new one", name)
            model.load_state_dict(state["model"])
            self.ema.load_state_dict(state["ema"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.step, self.seconds = state["step"], state.get("seconds", 0.0)
            torch.set_rng_state(state["torch_rng"].cpu())
            if self.device.type == "cuda" and "cuda_rng" in state:
                torch.cuda.set_rng_state(state["cuda_rng"].cpu(), self.device)
            logger.info("%s: resumed at step %d", name, self.step)

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        state = {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "seconds": self.seconds,
            "config": asdict(self.config),
            "torch_rng": torch.get_rng_state(),
        }
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        tmp = self.checkpoint.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.checkpoint)  # a kill mid-save leaves the previous checkpoint intact

    def run(self, loss_fn: Callable[[int], torch.Tensor]) -> ModelT:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        if self.step == 0:
            torch.manual_seed(self.config.seed)
        self.folder.mkdir(parents=True, exist_ok=True)
        log = (self.folder / "log.jsonl").open("a")
        columns = (TextColumn(self.name, markup=False), BarColumn(), TextColumn("{task.completed}/{task.total} loss {task.fields[loss]}"),
                   TimeRemainingColumn())
        with Progress(*columns, transient=False) as progress:
            task = progress.add_task(self.name, total=self.config.steps, completed=self.step, loss="-")
            running = None
            while self.step < self.config.steps:
                started = time.perf_counter()
                for group in self.optimizer.param_groups:
                    group["lr"] = self.config.lr_at(self.step)
                self.model.train()
                loss = loss_fn(self.step)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
                self.optimizer.step()
                decay = min(self.config.ema_decay, (1 + self.step) / (10 + self.step))
                with torch.no_grad():
                    for e, p in zip(self.ema.parameters(), self.model.parameters(), strict=True):
                        e.lerp_(p, 1 - decay)
                    for ema_buffer, buffer in zip(self.ema.buffers(), self.model.buffers(), strict=True):
                        ema_buffer.copy_(buffer)
                self.step += 1
                self.seconds += time.perf_counter() - started
                value = float(loss.detach())
                running = value if running is None else 0.98 * running + 0.02 * value
                progress.update(task, completed=self.step, loss=f"{running:.4f}")
                if self.step % 25 == 0 or self.step == self.config.steps:
                    log.write(json.dumps({"step": self.step, "loss": value, "ema_loss": running,
                                          "lr": self.config.lr_at(self.step - 1), "seconds": self.seconds}) + "\n")
                    log.flush()
                if self.step % self.config.checkpoint_every == 0 or self.step == self.config.steps:
                    self.save()
        log.close()
        self.ema.eval()
        return self.ema
