"""Callbacks every run gets (see PlatformCLI.run_callbacks)."""

import csv
import json
import os
import random
import shutil
import signal
import time

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.throughput import get_available_flops
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.flop_counter import FlopCounterMode

from litlab.loggers import finish_wandb
from litlab.runs import free_path
from litlab.signals import STOP, Stopped
from tasks.images import image_grid, save_png


class RNGState(L.Callback):
    """Saves the Python, NumPy, torch and CUDA random states with each checkpoint and restores them
    when training resumes, so that dropout and sampling continue exactly where they stopped.
    States are stored as tensors, ints and tuples: checkpoints load with ``weights_only=True``."""

    def state_dict(self) -> dict:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        return {
            "python": random.getstate(),
            "numpy": (kind, torch.from_numpy(keys.copy()), pos, has_gauss, gauss),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def load_state_dict(self, state_dict: dict) -> None:
        self._restore = state_dict

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        state = getattr(self, "_restore", None)
        if state is None:
            return
        version, internal, gauss_next = state["python"]
        random.setstate((version, tuple(internal), gauss_next))
        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, keys.numpy(), pos, has_gauss, gauss))
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        self._restore = None


class LastCheckpoint(Checkpoint):
    """``<run>/checkpoints/last.ckpt`` every ``every_n_train_steps`` optimizer steps, at the end of
    training (also when the last step is not a multiple of the interval), and when SIGTERM or SIGINT stops
    the fit (``litlab.signals``): once the step or validation batch under way is done, on every rank at
    the same step, after which it raises ``Stopped``. Each save is written aside and moved into place by
    rank 0 once every process has written its part: a kill during a save leaves the previous checkpoint
    whole, a sharded one (a directory) included. With ``remove_run_on_early_failure`` (a fresh run), a fit
    that fails before its first save removes the run directory, so that the next fresh run keeps the name.
    Any ``ModelCheckpoint`` a config adds works beside it."""

    def __init__(self, run_dir: str, every_n_train_steps: int, remove_run_on_early_failure: bool = False):
        self.run_dir, self.every_n_train_steps = run_dir, every_n_train_steps
        self.path = os.path.join(run_dir, "checkpoints", "last.ckpt")
        self.remove_run_on_early_failure, self.saved_step = remove_run_on_early_failure, None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        STOP.install()  # over the SIGTERM handler Lightning registered for this fit
        STOP.deferred = True

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        stop = self._stop_requested(trainer)
        if trainer.global_step % self.every_n_train_steps == 0 or stop:
            self.save(trainer)
        if stop:
            raise Stopped(STOP.signum or signal.SIGTERM, self.path, trainer.global_step)

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if STOP.deferred and not trainer.sanity_checking and self._stop_requested(trainer):
            self.save(trainer)  # the weights of the step validated; resuming runs this validation again
            raise Stopped(STOP.signum or signal.SIGTERM, self.path, trainer.global_step)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        STOP.deferred = False
        self.save(trainer)

    def _stop_requested(self, trainer: L.Trainer) -> bool:
        """Whether a signal reached any process: all stop at the same step (a save is collective)."""
        requested = STOP.signum is not None
        return trainer.strategy.reduce_boolean_decision(requested, all=False) if trainer.world_size > 1 else requested

    def save(self, trainer: L.Trainer) -> None:
        if trainer.global_step == self.saved_step or trainer.sanity_checking:
            return
        partial = f"{self.path}.partial"
        trainer.save_checkpoint(partial, weights_only=False)  # the whole training state; every rank writes (its shard), then a barrier
        if trainer.is_global_zero:
            if os.path.isdir(partial):  # shards: a directory cannot replace another in one step
                if os.path.exists(self.path):
                    os.replace(self.path, f"{self.path}.old")
                os.replace(partial, self.path)
                shutil.rmtree(f"{self.path}.old", ignore_errors=True)
            else:
                os.replace(partial, self.path)
        trainer.strategy.barrier()
        self.saved_step = trainer.global_step

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        STOP.deferred = False
        if self.remove_run_on_early_failure and self.saved_step is None and trainer.is_global_zero and not os.path.exists(self.path):
            finish_wandb(exit_code=1)
            shutil.rmtree(self.run_dir, ignore_errors=True)


class SpeedMonitor(L.Callback):
    """Logs, averaged over each logging interval: ``perf/samples_per_sec`` and, for batches of tokens
    (``core.batches``: ``batch.tokens``), ``perf/tokens_per_sec``, both over all processes; ``perf/mfu``,
    the model FLOP/s of a device over its peak; and ``perf/time_to_first_step`` since ``start_time``.

    The FLOPs are counted from the model, once, on the first batch: torch's FlopCounterMode adds up the
    matmuls, convolutions and attention of its forward and backward passes, per token (or per sample),
    whatever the task runs. The peak is ``peak_tflops`` where given, else Lightning's table of devices for
    the run's precision; with neither (a CPU), no MFU is logged rather than a guess. Only host clocks are
    read: no device synchronization in the training step."""

    def __init__(self, start_time: float | None = None, peak_tflops: float | None = None):
        self.start_time = time.perf_counter() if start_time is None else start_time
        self.peak_tflops = peak_tflops
        self.time_to_first_step: float | None = None
        self.tokens_per_sec: float | None = None
        self.flops_per_item: float | None = None  # per token, or per sample for tasks without tokens
        self._counter: FlopCounterMode | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        device_peak = get_available_flops(trainer.strategy.root_device, _compute_dtype(trainer))
        self.peak_flops = self.peak_tflops * 1e12 if self.peak_tflops else device_peak

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if self.time_to_first_step is None and self.peak_flops:
            self._counter = FlopCounterMode(display=False)
            self._counter.__enter__()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        samples, tokens = batch.size, batch.tokens
        if self.time_to_first_step is None:  # compilation and warm-up: not part of any throughput window
            if self._counter is not None:
                self._counter.__exit__(None, None, None)
                self.flops_per_item, self._counter = self._counter.get_total_flops() / (tokens or samples), None
            self.time_to_first_step = time.perf_counter() - self.start_time
            pl_module.log("perf/time_to_first_step", self.time_to_first_step, rank_zero_only=True)
            self._reset_window()
            return
        self.samples, self.tokens = self.samples + samples, self.tokens + tokens
        if trainer.global_step % trainer.log_every_n_steps == 0:
            elapsed, world = time.perf_counter() - self.window_start, trainer.world_size
            metrics = {"perf/samples_per_sec": self.samples * world / elapsed}
            if self.tokens:
                self.tokens_per_sec = metrics["perf/tokens_per_sec"] = self.tokens * world / elapsed
            if self.flops_per_item:
                metrics["perf/mfu"] = self.flops_per_item * (self.tokens or self.samples) / elapsed / self.peak_flops
            pl_module.log_dict(metrics, rank_zero_only=True)
            pl_module.log("tok/s" if self.tokens else "samples/s", self.tokens_per_sec or metrics["perf/samples_per_sec"],
                          prog_bar=True, logger=False, rank_zero_only=True)  # fmt: skip
            self._reset_window()

    def _reset_window(self) -> None:
        self.window_start, self.samples, self.tokens = time.perf_counter(), 0, 0


class PredictionWriter(L.Callback):
    """Writes what ``predict_step`` returns into the files the task names (``Task.prediction_files``), in the run
    directory; an existing file is never overwritten (``predictions-2.csv``...). A task returns a dict of
    per-example values for each batch (lists, or tensors whose first dimension is the batch's), ``index`` among
    them where examples come from a source: the datamodule's ``describe(index)`` columns (the text, an image's
    path) follow it. Each file's extension chooses its format:

    - ``.csv``: a row per example, a column per key, written batch by batch;
    - ``.jsonl``: a JSON object per example, the same keys, written batch by batch;
    - ``.npz``: an array per key, every batch's rows concatenated (tensors kept as they are: float32 stays exact);
    - ``.png``: a grid of the first ``GRID_IMAGES`` of the ``images`` returned, (C, H, W) in [0, 1].
    """

    FORMATS = (".csv", ".jsonl", ".npz", ".png")
    GRID_IMAGES, GRID_COLUMNS = 64, 8

    def __init__(self, run_dir: str):
        self.run_dir, self.paths, self._files, self._writers, self._arrays = run_dir, [], {}, {}, {}

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.world_size > 1:
            raise ValueError("predict writes one file: run it on one device (--trainer.devices 1)")
        names = getattr(pl_module, "prediction_files", ())
        if not names:
            raise ValueError(f"predict: {type(pl_module).__name__} has no predictions to write: expected a classifier, CausalLM, reconstruction, contrastive or GAN task")
        unknown = [n for n in names if not n.endswith(self.FORMATS)]
        if unknown:
            raise ValueError(f"{type(pl_module).__name__}.prediction_files names {unknown[0]!r}: expected a file ending in {', '.join(self.FORMATS)}")
        os.makedirs(self.run_dir, exist_ok=True)
        self.paths = [free_path(os.path.join(self.run_dir, name)) for name in names]
        self._files = {path: open(path, "w", newline="") for path in self.paths if path.endswith((".csv", ".jsonl"))}
        self._writers, self._arrays = {}, {}

    def on_predict_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: dict, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        columns = self.columns(outputs, trainer.datamodule)
        rows = [dict(zip(columns, values)) for values in zip(*columns.values())]
        for path, file in self._files.items():
            if path.endswith(".jsonl"):
                file.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
                continue
            if path not in self._writers:
                self._writers[path] = csv.DictWriter(file, fieldnames=list(columns))
                self._writers[path].writeheader()
            self._writers[path].writerows(rows)
        if any(path.endswith((".npz", ".png")) for path in self.paths):
            for key, value in outputs.items():
                self._arrays.setdefault(key, []).append(value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value))

    @staticmethod
    def columns(outputs: dict, datamodule) -> dict[str, list]:
        """A batch's outputs as lists, with the datamodule's description of the inputs after ``index``."""
        columns = {key: value.tolist() if isinstance(value, torch.Tensor) else list(value) for key, value in outputs.items()}
        if "index" not in columns or not hasattr(datamodule, "describe"):
            return columns
        keys = list(columns)
        described = datamodule.describe(columns["index"])
        after = keys.index("index") + 1
        return {**{k: columns[k] for k in keys[:after]}, **described, **{k: columns[k] for k in keys[after:]}}

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for file in self._files.values():
            file.close()
        arrays = {key: np.concatenate(parts) for key, parts in self._arrays.items()}
        for path in self.paths:
            if path.endswith(".npz"):
                np.savez(path, **arrays)
            elif path.endswith(".png"):
                if "images" not in arrays:
                    raise ValueError(f"predict: {path} is a grid of the images predict_step returns, and it returned none: expected an 'images' key")
                images = torch.from_numpy(arrays["images"][: self.GRID_IMAGES]) * 2 - 1  # image_grid takes [-1, 1]
                save_png(image_grid(list(images.split(self.GRID_COLUMNS))), path)
        print_rank_zero("\n".join(f"Predictions: {path}" for path in self.paths))


class TestFigures(L.Callback):
    """Saves the images a task made at test (``Task.test_figures``: a confusion matrix...) as ``<run>/<name>.png``,
    never over an earlier one (``confusion_matrix-2.png``...), and prints where."""

    def __init__(self, run_dir: str):
        self.run_dir, self.paths = run_dir, []

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        for name, image in getattr(pl_module, "test_figures", {}).items():
            os.makedirs(self.run_dir, exist_ok=True)
            path = free_path(os.path.join(self.run_dir, f"{name}.png"))
            save_png(image, path)
            self.paths.append(path)
            print_rank_zero(f"{name.replace('_', ' ').capitalize()}: {path}")


class ValidationReport(L.Callback):
    """Prints one line per validation (readable in a batch job's log, where no progress bar is) and
    remembers its step, so that fit can end with a validation of the final weights. ``weights_step``:
    the step of the checkpoint that ``validate`` scores (its trainer counts no steps of its own)."""

    step: int | None = None

    def __init__(self, weights_step: int | None = None):
        self.weights_step = weights_step

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.step = trainer.global_step if self.weights_step is None else self.weights_step
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("val/", "train/"))}
        print_rank_zero(f"step {self.step}: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items())))


def _compute_dtype(trainer: L.Trainer) -> torch.dtype:
    precision = str(trainer.precision)
    if precision.startswith("bf16"):
        return torch.bfloat16
    if precision.startswith("16"):
        return torch.float16
    return torch.float32


@rank_zero_only
def print_rank_zero(*args) -> None:
    print(*args, flush=True)
