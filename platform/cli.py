"""``python -m platform``: LightningCLI with the platform's defaults.

What every run gets (on top of what its config says):
- a run directory of its own, ``runs/<name>/`` (``<name>`` from ``run.name``, else the config file's
  name); a fresh fit never reuses one, so nothing is overwritten;
- a last checkpoint every ``run.checkpoint_every`` steps and at the end, in ``<run>/checkpoints/``;
- precision bf16-mixed on GPUs that support it, fp32 on a CPU, unless the config says otherwise;
- learning-rate logging, throughput (samples/s, tokens/s, MFU where known) and time to first step;
- the RNG states saved in checkpoints, so a resumed run continues as the uninterrupted one would;
- W&B logging into ``<run>/wandb``, offline when there are no credentials (``trainer.logger``
  replaces it: ``false``, or a CSV or TensorBoard logger);
- ``--ckpt_path`` taking ``last`` (an error when there is nothing to resume), a run directory or a file;
- ``predict`` writing what the task predicts to ``<run>/predictions.csv`` (never over an earlier file).
"""

import os
import shutil
import sys
import time
from dataclasses import dataclass

import lightning as L
import torch
import yaml
from jsonargparse import dict_to_namespace
from lightning.pytorch.callbacks import LearningRateMonitor, ProgressBar, TQDMProgressBar
from lightning.pytorch.cli import LightningCLI, instantiate_class
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from platform.callbacks import LastCheckpoint, PredictionWriter, RNGState, SpeedMonitor, ValidationReport, print_rank_zero
from platform.hardware import check_device, default_precision, keep_freed_memory
from platform.loggers import finish_wandb, wandb_logger, wandb_sync_hint
from platform.runs import check_fits, new_run_dir, resolve_ckpt_path, run_dir_of
from platform.strategies import FSDP2  # noqa: F401  registers --trainer.strategy fsdp2
from tasks.checkpoints import read_checkpoint

START_TIME = time.perf_counter()
# model arguments that change how a network runs, not what it computes: a resumed run takes them from
# its command line, not from the checkpoint (a compiled run resumes eagerly and the other way round)
RUN_OPTIONS = ("compile", "activation_checkpointing")


@dataclass
class Run:
    """Where a run lives and how often it is checkpointed.

    Args:
        name: the run's name; default: the first config file's name (configs/gpt_small.yaml -> gpt_small).
        dir: the directory that holds all runs.
        checkpoint_every: save ``last.ckpt`` every this many optimizer steps (and at the end).
        project: the W&B project.
        peak_tflops: the peak TFLOP/s of one device in the run's precision, for ``perf/mfu`` where
            Lightning does not know it (CPUs, GPUs newer than it); by default, Lightning's figure.
    """

    name: str | None = None
    dir: str = "runs"
    checkpoint_every: int = 200
    project: str = "platform"
    peak_tflops: float | None = None


class PlatformCLI(LightningCLI):
    def __init__(self, args=None, run: bool = True):
        super().__init__(
            L.LightningModule,
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=None,  # written into the run directory by before_fit
            auto_configure_optimizers=False,  # each task configures its own
            parser_kwargs={"prog": "python -m platform"},
            args=args,
            run=run,
        )

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_class_arguments(Run, "run")
        # Lightning would log the model's hparams flattened; before_fit logs the whole nested config once
        parser.set_defaults({"trainer.enable_autolog_hparams": False})
        if any(action.dest == "weights_only" for action in parser._actions):  # never run code from a checkpoint
            parser.set_defaults({"weights_only": True})

    # -- names and directories -----------------------------------------------------------------
    def _of_subcommand(self, namespace):
        return namespace.get(str(self.subcommand), namespace)

    @property
    def _config(self):
        return self._of_subcommand(self.config)

    @property
    def run_name(self) -> str:
        config = self.config.get(self.config.get("subcommand") or "", self.config)
        if config.run.name:
            return config.run.name
        files = config.get("config") or []
        if files:
            return os.path.splitext(os.path.basename(str(files[0])))[0]
        return config.model.class_path.rsplit(".", 1)[-1].lower()

    def _parse_ckpt_path(self) -> None:
        """Resolve ``last`` and run directories to a file before Lightning reads its hyperparameters."""
        subcommand = self.config.get("subcommand")
        if subcommand and self.config[subcommand].get("ckpt_path"):
            config = self.config[subcommand]
            config.ckpt_path = resolve_ckpt_path(config.ckpt_path, config.run.dir, self.run_name)
            self.checkpoint = read_checkpoint(config.ckpt_path, what="--ckpt_path", tensors=False)
            # Lightning sets the model config to the checkpoint's; how the networks run is this run's choice
            given = {key: config.model[key] for key in config.model.keys() if key.rsplit(".", 1)[-1] in RUN_OPTIONS}
            super()._parse_ckpt_path()
            for key, value in given.items():
                self.config[subcommand].model[key] = value

    # -- instantiation ---------------------------------------------------------------------------
    def instantiate_classes(self) -> None:
        """Instantiate the datamodule first and fill the network arguments it determines (such as
        ``vocab_size``) wherever the model config leaves them ``None``; then everything else."""
        config = self._config
        check_device(config.trainer)  # before anything is built
        if config.get("ckpt_path"):
            _networks_from_checkpoint(config.model.init_args, self.checkpoint.get("hyper_parameters", {}))
        self.datamodule = instantiate_class((), config.data.as_dict())
        _fill_none(config.model, getattr(self.datamodule, "model_args", {}))
        to_instantiate = self.config.clone()
        self._of_subcommand(to_instantiate).data = None  # already built
        self.config_init = self.parser.instantiate_classes(to_instantiate)
        self._of_subcommand(self.config_init).data = self.datamodule
        self.model = self._of_subcommand(self.config_init).model
        if config.get("ckpt_path"):
            check_fits(self.model, self.checkpoint, config.ckpt_path)
        self.trainer = self.instantiate_trainer()

    def instantiate_trainer(self, **kwargs) -> L.Trainer:
        config = self._config
        ckpt_path = config.get("ckpt_path")
        if self.subcommand == "fit" and not ckpt_path:
            self.run_dir = new_run_dir(config.run.dir, self.run_name)
        else:
            self.run_dir = (run_dir_of(ckpt_path) if ckpt_path else None) or os.path.join(config.run.dir, self.run_name)
        trainer_init = self._of_subcommand(self.config_init).trainer
        logger = trainer_init.get("logger")
        if logger is None or logger is True:  # not chosen by the config: W&B for fit, none otherwise
            logger = wandb_logger(self.run_dir, self.run_name, config.run.project, config) if self.subcommand == "fit" else False
        if config.trainer.get("precision") is None:  # not chosen: bf16 on GPUs that have it, else fp32
            kwargs["precision"] = default_precision(config.trainer.get("accelerator"))
        callbacks = trainer_init.get("callbacks") or []
        callbacks = [callbacks] if isinstance(callbacks, L.Callback) else list(callbacks)
        callbacks += self.run_callbacks(config, has_logger=bool(logger), given=callbacks)
        kwargs.update(callbacks=callbacks, logger=logger, default_root_dir=self.run_dir)
        return super().instantiate_trainer(**kwargs)

    def run_callbacks(self, config, has_logger: bool, given: list[L.Callback]) -> list[L.Callback]:
        if config.run.checkpoint_every < 1:
            raise ValueError(f"run.checkpoint_every={config.run.checkpoint_every}: expected a positive number of steps")
        if config.run.peak_tflops is not None and config.run.peak_tflops <= 0:
            raise ValueError(f"run.peak_tflops={config.run.peak_tflops}: expected the device's peak TFLOP/s, a positive number")
        checkpoint = LastCheckpoint(os.path.join(self.run_dir, "checkpoints"), every_n_train_steps=config.run.checkpoint_every)
        learning_rate = [LearningRateMonitor(logging_interval="step")] if has_logger else []
        predictions = [PredictionWriter(self.run_dir)] if self.subcommand == "predict" else []
        # the bar reads the logged values, a device synchronization: once per logging interval, not every step
        bar = config.trainer.enable_progress_bar is not False and not any(isinstance(c, ProgressBar) for c in given)
        progress = [TQDMProgressBar(refresh_rate=config.trainer.log_every_n_steps or 50)] if bar else []
        speed = SpeedMonitor(START_TIME, config.run.peak_tflops)
        return [checkpoint, *learning_rate, *predictions, *progress, RNGState(), speed, ValidationReport()]

    def _run_subcommand(self, subcommand: str) -> None:
        try:
            super()._run_subcommand(subcommand)
        except (ValueError, FileNotFoundError):
            # bad input found once training began (data that does not fit the model): a fresh run that
            # never saved a checkpoint leaves no directory behind to be mistaken for a run
            fresh = subcommand == "fit" and not self._config.get("ckpt_path")
            if fresh and self.trainer.is_global_zero and not os.path.isdir(os.path.join(self.run_dir, "checkpoints")):
                finish_wandb(exit_code=2)
                shutil.rmtree(self.run_dir, ignore_errors=True)
            raise

    # -- fit -------------------------------------------------------------------------------------
    def before_fit(self) -> None:
        if self.trainer.is_global_zero and not self._config.get("ckpt_path"):
            os.makedirs(self.run_dir, exist_ok=True)
            self._parser(self.subcommand).save(self._config, os.path.join(self.run_dir, "config.yaml"), skip_none=False, overwrite=False)
            if isinstance(self.trainer.logger, WandbLogger):
                with open(os.path.join(self.run_dir, "wandb_id"), "w") as f:
                    f.write(f"{self.trainer.logger.version}\n")
        if self.trainer.logger:
            self.trainer.logger.log_hyperparams(yaml.safe_load(self._parser(self.subcommand).dump(self._config, skip_none=False)))

    def after_fit(self) -> None:
        trainer, model, datamodule = self.trainer, self.model, self.datamodule
        tracker = next(c for c in trainer.callbacks if isinstance(c, ValidationReport))
        if tracker.step != trainer.global_step and trainer.limit_val_batches:  # report the final weights' loss
            trainer.validate(model, datamodule=datamodule, verbose=False)
        if not trainer.is_global_zero:
            return
        lines = [f"Run directory: {self.run_dir}", f"  checkpoint:  {os.path.join(self.run_dir, 'checkpoints', 'last.ckpt')}"]
        lines.append(f"  config:      {os.path.join(self.run_dir, 'config.yaml')}")
        if isinstance(trainer.logger, WandbLogger):
            lines.append(f"  W&B run:     {wandb_sync_hint(trainer.logger)}")
        speed = next((c for c in trainer.callbacks if isinstance(c, SpeedMonitor)), None)
        if speed and speed.time_to_first_step is not None:
            lines.append(f"  time to first step: {speed.time_to_first_step:.1f} s")
        val_loss = trainer.callback_metrics.get("val/loss")
        if val_loss is not None:
            lines.append(f"  final val/loss: {float(val_loss):.4f}")
        if hasattr(datamodule, "unigram_entropy") and val_loss is not None:
            entropy = datamodule.unigram_entropy()
            lines.append(f"  unigram entropy of the val tokens: {entropy:.4f} (val/loss is {entropy - float(val_loss):.2f} nats below)")
        if getattr(model, "sample", None):
            lines.append(f"  sample: {model.sample!r}")
        print_rank_zero("\n".join(lines))


def _networks_from_checkpoint(init_args, saved: dict) -> None:
    """A resumed run rebuilds what ``*_ckpt`` arguments once loaded (``backbone_ckpt``, ``teacher_ckpt``,
    ``init_ckpt``) from the checkpoint being resumed, which holds their weights and, in its
    hyperparameters, their configs: the files they came from may be gone."""
    for key in [k for k in init_args.keys() if k.endswith("_ckpt") and init_args[k]]:
        network = key.removesuffix("_ckpt")
        if network in init_args and init_args[network] is None and isinstance(saved.get(network), dict):
            init_args[network] = dict_to_namespace(saved[network])
        init_args[key] = None


def _fill_none(config, values: dict) -> None:
    """Set ``key`` to ``values[key]`` in every ``init_args`` under ``config`` where it is None."""
    if not values or config is None:
        return
    if hasattr(config, "items"):
        init_args = config.get("init_args") if "class_path" in config else None
        if init_args is not None:
            for key, value in values.items():
                if key in init_args and init_args[key] is None:
                    init_args[key] = value
        for child in (config.values() if not hasattr(config, "__dict__") else vars(config).values()):
            _fill_none(child, values)
    elif isinstance(config, list):
        for child in config:
            _fill_none(child, values)


def main(args=None) -> None:
    """Run the CLI; bad input ends with one line naming the problem and exit status 2."""
    torch.set_float32_matmul_precision("high")
    keep_freed_memory()
    try:
        PlatformCLI(args=args)
    except (ValueError, FileNotFoundError, MisconfigurationException) as err:
        finish_wandb(exit_code=2)
        if os.environ.get("PLATFORM_DEBUG"):
            raise
        while isinstance(err.__cause__, (ValueError, FileNotFoundError)):  # jsonargparse wraps what a class raised
            err = err.__cause__
        print(f"error: {err}  (PLATFORM_DEBUG=1 shows the traceback)", file=sys.stderr)
        sys.exit(2)
    finish_wandb()
