"""``litlab`` (``python -m platform`` from the repo root): LightningCLI with the platform's defaults.

What every run gets (on top of what its config says):
- the defaults every config shares, ``litlab/defaults.yaml`` (seed, checkpointing cadence, clipping...),
  which a config overrides;
- the network and task arguments the data determines (``from_data``, see ``core.data``) filled from the
  datamodule's ``info``, and refused in one line where the config contradicts the data; ``--print_config``
  shows the filled config;
- a run directory of its own, ``runs/<name>/`` (``<name>`` from ``run.name``, else the config file's
  name); a fresh fit never reuses one, so nothing is overwritten, and one that fails before its first
  checkpoint leaves none behind;
- a last checkpoint every ``run.checkpoint_every`` steps and at the end, in ``<run>/checkpoints/``;
- precision bf16-mixed on GPUs that support it, fp32 on a CPU, unless the config says otherwise;
- learning-rate logging, throughput (samples/s, tokens/s, MFU where known) and time to first step;
- the RNG states saved in checkpoints, so a resumed run continues as the uninterrupted one would;
- W&B logging into ``<run>/wandb``, offline when there are no credentials (``trainer.logger``
  replaces it: ``false``, or a CSV or TensorBoard logger);
- ``--ckpt_path`` taking ``last`` (an error when there is nothing to resume), a run directory or a file;
- ``test`` saving the images a task makes of its test (a classifier's confusion matrix) into the run directory;
- ``predict`` writing what the task predicts into the run directory (``predictions.csv``, ``latents.npz``...,
  never over an earlier file; ``litlab.callbacks.PredictionWriter``);
- ``compare runs/a runs/b ...`` printing runs side by side from their files (``litlab.compare``), ``generate`` text
  from a causal LM's checkpoint (``litlab.generate``), ``export`` a run's network for Hugging Face (``litlab.export``).
"""

import importlib
import os
import sys
import time
import warnings
from dataclasses import dataclass

import lightning as L
import torch
import yaml
from jsonargparse import ArgumentError, Namespace
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, ProgressBar, TQDMProgressBar
from lightning.pytorch.cli import LightningCLI, instantiate_class
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from core.checkpoints import check_fits, read_checkpoint
from core.compat import deferred_print_config, subcommand_parser
from core.data import DataInfo
from datamodules.base import DataModule
from litlab.callbacks import LastCheckpoint, PredictionWriter, RNGState, SpeedMonitor, TestFigures, ValidationReport, print_rank_zero
from litlab.errors import check_config_files, one_line
from litlab.hardware import check_device, default_precision, keep_freed_memory
from litlab.loggers import MetricsFile, finish_wandb, wandb_logger, wandb_sync_hint
from litlab.resume import RUN_OPTIONS, check_same_model, check_same_workers, networks_from_checkpoint
from litlab.runs import check_writable, new_run_dir, resolve_ckpt_path, run_dir, run_dir_of
from litlab.signals import STOP, Stopped
from litlab.strategies import FSDP2  # noqa: F401  registers --trainer.strategy fsdp2
from tasks.base import Task
from tasks.images import save_png

IMPORTED = [time.perf_counter()]  # a process's first command counts these imports in its time to first step
DEFAULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "defaults.yaml")
SHARED_DEFAULTS = {"default_config_files": [DEFAULTS]}  # what every config overrides, for each subcommand's parser
SUBCOMMANDS = ("fit", "validate", "test", "predict")
TOOLS = {"compare": "litlab.compare", "generate": "litlab.generate", "export": "litlab.export"}  # verbs beside LightningCLI's, each a module's main(argv)


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
        monitor: a metric the task logs at validation (``val/loss``): the checkpoint where it was best is kept
            as ``checkpoints/best.ckpt`` beside ``last.ckpt``, for ``--ckpt_path best``.
        mode: ``min`` or ``max``: whether ``monitor`` is better lower or higher.
        early_stopping: stop the fit after this many validations in a row without ``monitor`` improving.
    """

    name: str | None = None
    dir: str = "runs"
    checkpoint_every: int = 200
    project: str = "platform"
    peak_tflops: float | None = None
    monitor: str | None = None
    mode: str = "min"
    early_stopping: int | None = None


def program_name() -> str:
    """How the user ran the CLI, for its help: ``litlab``, ``python -m platform`` or ``python -m litlab``."""
    path = sys.argv[0]
    if os.path.basename(path) == "__main__.py":
        return f"python -m {os.path.basename(os.path.dirname(path))}"
    return os.path.basename(path) or "litlab"


def command_start() -> float:
    """When this command began, for its time to first step and its wall time: when the CLI was imported for a
    process's first command (a user waits for the imports too), now for a later one in the same process (a
    notebook, the tests), which would otherwise count the commands before it."""
    return IMPORTED.pop() if IMPORTED else time.perf_counter()


class PlatformCLI(LightningCLI):
    def __init__(self, args=None, run: bool = True):
        self.start_time = command_start()
        super().__init__(
            L.LightningModule,
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=None,  # written into the run directory by before_fit
            auto_configure_optimizers=False,  # every task takes `optimizer` and `schedule` (tasks.base.Task)
            parser_kwargs={"prog": program_name(), "exit_on_error": False, **({name: SHARED_DEFAULTS for name in SUBCOMMANDS} if run else SHARED_DEFAULTS)},
            args=args,
            run=run,
        )

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_class_arguments(Run, "run")
        # Lightning would log the model's hparams flattened; before_fit logs the whole nested config once
        parser.set_defaults({"trainer.enable_autolog_hparams": False})

    # -- the config ------------------------------------------------------------------------------
    def _of_subcommand(self, namespace: Namespace) -> Namespace:
        """The part of a config (parsed, or instantiated) that belongs to the subcommand being run."""
        return namespace.get(self.config.get("subcommand") or "", namespace)

    @property
    def _config(self) -> Namespace:
        return self._of_subcommand(self.config)

    @property
    def run_name(self) -> str:
        config = self._config
        if config.run.name is not None:  # an empty name is refused as a name, not taken for none
            return config.run.name
        files = [f for f in config.get("config") or [] if os.path.abspath(str(f)) != DEFAULTS]
        if files:
            return os.path.splitext(os.path.basename(str(files[0])))[0]
        return config.model.class_path.rsplit(".", 1)[-1].lower()

    def parse_arguments(self, parser, args) -> None:
        """Parse; hold back ``--print_config`` until the data has filled the config in; resolve
        ``--ckpt_path last`` or a run directory to a file, before Lightning reads the model's config from
        it (which LightningCLI then puts in place of the command line's)."""
        with deferred_print_config(parser) as self.print_request:
            super().parse_arguments(parser, args)
        config, self.checkpoint, self.run_options = self._config, None, {}
        if "weights_only" in config and config.weights_only is None:
            config.weights_only = True  # a checkpoint's tensors only: no code from a file ever runs
        if config.get("ckpt_path"):
            if config.ckpt_path == "best" and self.config.get("subcommand") == "fit":
                raise ValueError("fit --ckpt_path best: a fit resumes from its last checkpoint (best.ckpt is for validate, test and predict); "
                                 "expected last, a run directory or a .ckpt file")  # fmt: skip
            config.ckpt_path = resolve_ckpt_path(config.ckpt_path, config.run.dir, self.run_name)
            self.checkpoint = read_checkpoint(config.ckpt_path, what="--ckpt_path", tensors=False)
            self.run_options = {key: config.model[key] for key in config.model.keys() if key.rsplit(".", 1)[-1] in RUN_OPTIONS}
            check_same_model(config.model.as_dict(), self.checkpoint, config.ckpt_path, resuming=self.config.get("subcommand") == "fit")
            if self.config.get("subcommand") == "fit":
                check_same_workers(config.data.init_args.get("num_workers"), self.checkpoint, config.ckpt_path)

    def before_instantiate_classes(self) -> None:
        """Before anything is built: the device checked, the datamodule built, and the model's arguments
        that the data determines filled in from its ``info``."""
        config = self._config
        check_device(config.trainer)
        if self.subcommand == "fit":
            check_training_length(config.trainer)
        if self.subcommand in ("fit", "test", "predict"):
            check_writable(config.run.dir)
        for key, value in self.run_options.items():  # how the networks run is this run's choice
            config.model[key] = value
        pretrained = set()  # networks rebuilt from the checkpoint: their sizes are the checkpoint's, not the data's
        if self.checkpoint is not None:
            pretrained = networks_from_checkpoint(config.model.init_args, self.checkpoint.get("hyper_parameters", {}))
        self.datamodule = instantiate_class((), config.data.as_dict())
        self.data_info = self.datamodule.info if isinstance(self.datamodule, DataModule) else DataInfo()
        fill_from_data(config.model, self.data_info, skip=pretrained)
        if self.print_request:
            parser = self.print_request.pop("subparser")
            sys.stdout.write(parser.dump(config, **self.print_request))
            sys.exit(0)

    def instantiate_classes(self) -> None:
        """The model and the trainer; the datamodule is already built."""
        to_instantiate = self.config.clone()
        self._of_subcommand(to_instantiate).data = None
        self.config_init = self.parser.instantiate_classes(to_instantiate)
        self._of_subcommand(self.config_init).data = self.datamodule
        self.model = self._of_subcommand(self.config_init).model
        if isinstance(self.model, Task):
            self.model.use_data(self.data_info)  # data that does not fit the model: refused before any run directory exists
        if self.checkpoint is not None:
            check_fits(self.model, self.checkpoint["state_dict"], f"--ckpt_path {self._config.ckpt_path}: does not fit the configured model")
        self.trainer = self.instantiate_trainer()

    def instantiate_trainer(self, **kwargs) -> L.Trainer:
        config = self._config
        ckpt_path = config.get("ckpt_path")
        fresh = self.subcommand == "fit" and not ckpt_path
        if fresh:
            self.run_dir = new_run_dir(config.run.dir, self.run_name)
        else:
            self.run_dir = (run_dir_of(ckpt_path) if ckpt_path else None) or run_dir(config.run.dir, self.run_name)
        trainer_init = self._of_subcommand(self.config_init).trainer
        logger = trainer_init.get("logger")
        if logger is None or logger is True:  # not chosen by the config: W&B for fit, and for a test of a run the fit logged to W&B
            into_wandb = self.subcommand == "fit" or (self.subcommand == "test" and os.path.exists(os.path.join(self.run_dir, "wandb_id")))
            logger = wandb_logger(self.run_dir, self.run_name, config.run.project, config) if into_wandb else False  # the run's own W&B run
        if logger and self.subcommand == "fit":  # beside the logger, the same metrics in a file of the run
            resume_step = self.checkpoint.get("global_step") if self.checkpoint is not None else None
            metrics = MetricsFile(os.path.join(self.run_dir, "metrics.jsonl"), self.start_time, resume_step)
            logger = [*(logger if isinstance(logger, (list, tuple)) else [logger]), metrics]
        if config.trainer.get("precision") is None:  # not chosen: bf16 on GPUs that have it, else fp32
            kwargs["precision"] = default_precision(config.trainer.get("accelerator"))
        callbacks = trainer_init.get("callbacks") or []
        callbacks = [callbacks] if isinstance(callbacks, L.Callback) else list(callbacks)
        callbacks += self.run_callbacks(config, has_logger=bool(logger), given=callbacks, fresh=fresh)
        kwargs.update(callbacks=callbacks, logger=logger, default_root_dir=self.run_dir)
        return super().instantiate_trainer(**kwargs)

    def run_callbacks(self, config, has_logger: bool, given: list[L.Callback], fresh: bool) -> list[L.Callback]:
        if config.run.checkpoint_every < 1:
            raise ValueError(f"run.checkpoint_every={config.run.checkpoint_every}: expected a positive number of steps")
        if config.run.peak_tflops is not None and config.run.peak_tflops <= 0:
            raise ValueError(f"run.peak_tflops={config.run.peak_tflops}: expected the device's peak TFLOP/s, a positive number")
        # a fresh run that fails before its first checkpoint removes its directory: the next fresh run keeps the name
        checkpoint = LastCheckpoint(self.run_dir, config.run.checkpoint_every, remove_run_on_early_failure=fresh)
        checkpoints = os.path.join(self.run_dir, "checkpoints")
        for callback in given:  # a checkpoint callback the user added saves inside the run, not in the logger's folder
            if isinstance(callback, ModelCheckpoint):
                if callback.save_last:
                    raise ValueError(f"{type(callback).__name__}(save_last={callback.save_last}): the run saves last.ckpt itself; "
                                     "expected save_last unset (a second last.ckpt would replace the run's)")  # fmt: skip
                callback.dirpath = callback.dirpath or checkpoints
        best = best_checkpoint(checkpoints, config.run) if self.subcommand == "fit" else []
        # the run's checkpoints/ holds last.ckpt by design; and validate, test and predict need none of the callbacks a fit had
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
        if self.subcommand != "fit":
            warnings.filterwarnings("ignore", message="Be aware that when using `ckpt_path`, callbacks used to create the checkpoint")
            warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")  # Lightning's own test/predict loops, on torch 2.13
        learning_rate = [LearningRateMonitor(logging_interval="step")] if has_logger and self.subcommand == "fit" else []
        writers = {"predict": [PredictionWriter(self.run_dir)], "test": [TestFigures(self.run_dir)]}.get(self.subcommand, [])  # files of the run
        # the bar reads the logged values, a device synchronization: once per logging interval, not every step
        bar = config.trainer.enable_progress_bar is not False and not any(isinstance(c, ProgressBar) for c in given)
        progress = [TQDMProgressBar(refresh_rate=config.trainer.log_every_n_steps or 50)] if bar else []
        speed = SpeedMonitor(self.start_time, config.run.peak_tflops)
        weights_step = self.checkpoint.get("global_step") if self.checkpoint is not None and self.subcommand != "fit" else None
        return [checkpoint, *best, *learning_rate, *writers, *progress, RNGState(), speed, ValidationReport(weights_step)]

    # -- fit -------------------------------------------------------------------------------------
    def before_fit(self) -> None:
        parser = subcommand_parser(self, self.subcommand)
        if self.trainer.is_global_zero and not self._config.get("ckpt_path"):
            os.makedirs(self.run_dir, exist_ok=True)
            parser.save(self._config, os.path.join(self.run_dir, "config.yaml"), skip_none=False, overwrite=False)
            if isinstance(self.trainer.logger, WandbLogger):
                with open(os.path.join(self.run_dir, "wandb_id"), "w") as f:
                    f.write(f"{self.trainer.logger.version}\n")
        if self.trainer.logger:
            self.trainer.logger.log_hyperparams(yaml.safe_load(parser.dump(self._config, skip_none=False)))

    def after_fit(self) -> None:
        trainer, model, datamodule = self.trainer, self.model, self.datamodule
        tracker = next(c for c in trainer.callbacks if isinstance(c, ValidationReport))
        if tracker.step != trainer.global_step and trainer.limit_val_batches:  # report the final weights' loss
            trainer.validate(model, datamodule=datamodule, verbose=False)
        if not trainer.is_global_zero:
            return
        lines = [f"Run directory: {self.run_dir}", f"  checkpoint:  {os.path.join(self.run_dir, 'checkpoints', 'last.ckpt')}"]
        best = next((c for c in trainer.callbacks if type(c) is ModelCheckpoint and c.filename == "best"), None)
        if best is not None and best.best_model_score is not None:
            step = read_checkpoint(best.best_model_path, what="best.ckpt", tensors=False).get("global_step")
            lines.append(f"  best:        {best.best_model_path} ({best.monitor} {float(best.best_model_score):.4f} at step {step})")
        lines.append(f"  config:      {os.path.join(self.run_dir, 'config.yaml')}")
        if isinstance(trainer.logger, WandbLogger):
            lines.append(f"  W&B run:     {wandb_sync_hint(trainer.logger)}")
        speed = next((c for c in trainer.callbacks if isinstance(c, SpeedMonitor)), None)
        if speed and speed.time_to_first_step is not None:
            lines.append(f"  time to first step: {speed.time_to_first_step:.1f} s")
        val_loss = trainer.callback_metrics.get("val/loss")
        if val_loss is not None:
            lines.append(f"  final val/loss: {float(val_loss):.4f}")
        if isinstance(model, Task):
            lines += model.summary()
        sample = model.last_sample if isinstance(model, Task) else None
        if isinstance(sample, torch.Tensor):
            save_png(sample, path := os.path.join(self.run_dir, "sample.png"))
            lines.append(f"  sample:      {path}")
        elif sample is not None:
            lines.append(f"  sample: {sample!r}")
        print_rank_zero("\n".join(lines))


def fill_from_data(config, info: DataInfo, where: str = "model", skip: set[str] = frozenset()) -> None:
    """Fill the arguments that each class in ``config`` (the model's, nested networks and tasks too)
    declares in ``from_data`` from ``info``, where the config leaves them ``None``; refuse, in one
    line, an explicit value that the data contradicts. Nothing else is touched, nor the networks
    named in ``skip``."""
    if not isinstance(config, Namespace) or "class_path" not in config:
        return
    init_args = config.get("init_args") or Namespace()
    module, _, name = config.class_path.rpartition(".")
    for arg, field in getattr(getattr(importlib.import_module(module), name), "from_data", {}).items():
        data, given = info.value(field), init_args.get(arg)
        if data is None:
            continue
        if given is None:
            init_args[arg] = data
        elif not DataInfo.agrees(field, given, data):
            raise ValueError(
                f"{where}.init_args.{arg}={given} disagrees with the data's {field} ({data}): expected "
                f"{'at least ' if field == 'vocab_size' else ''}{data}, or leave it unset to take the data's"
            )
    for key, value in vars(init_args).items():  # the networks (and tasks) inside
        if key not in skip:
            fill_from_data(value, info, f"{where}.init_args.{key}")


def best_checkpoint(checkpoints: str, run: Run) -> list[L.Callback]:
    """The callbacks that ``run.monitor``, ``run.mode`` and ``run.early_stopping`` ask for: Lightning's own
    ModelCheckpoint (its best score is in every checkpoint, so a resumed run keeps comparing with it) and
    EarlyStopping, each checked in one line first."""
    if run.mode not in ("min", "max"):
        raise ValueError(f"run.mode={run.mode!r}: expected 'min' or 'max' (whether run.monitor is better lower or higher)")
    if run.early_stopping is not None and (not isinstance(run.early_stopping, int) or run.early_stopping < 1):
        raise ValueError(f"run.early_stopping={run.early_stopping}: expected a positive number of validations, or null")
    if run.monitor is None:
        if run.early_stopping is not None:
            raise ValueError(f"run.early_stopping={run.early_stopping}: stops when run.monitor stops improving; expected run.monitor (val/loss...)")
        return []
    best = ModelCheckpoint(dirpath=checkpoints, filename="best", monitor=run.monitor, mode=run.mode, save_top_k=1,
                           auto_insert_metric_name=False, enable_version_counter=False, save_on_train_epoch_end=False)  # fmt: skip
    if run.early_stopping is None:
        return [best]
    return [best, EarlyStopping(monitor=run.monitor, mode=run.mode, patience=run.early_stopping, check_on_train_epoch_end=False)]


def check_training_length(trainer) -> None:
    """A fit that would train nothing is refused: it would end "successfully" with no checkpoint written."""
    max_steps, max_epochs = trainer.get("max_steps"), trainer.get("max_epochs")
    if max_steps is not None and (max_steps == 0 or max_steps < -1):
        raise ValueError(f"trainer.max_steps={max_steps}: expected a positive number of steps, or -1 to train for max_epochs")
    if max_epochs is not None and (max_epochs == 0 or max_epochs < -1):
        raise ValueError(f"trainer.max_epochs={max_epochs}: expected a positive number of epochs, or -1 to train for max_steps")


def main(args=None) -> None:
    """Run the CLI; bad input ends with one line naming the problem and exit status 2, a stop by SIGTERM or
    SIGINT with one line saying what was saved and exit status 143 or 130 (``litlab.signals``)."""
    torch.set_float32_matmul_precision("high")
    keep_freed_memory()
    argv = sys.argv[1:] if args is None else list(args)
    if argv[:1] and argv[0] in TOOLS:  # commands on a run's files: no datamodule, no trainer
        tool = importlib.import_module(TOOLS[argv[0]])
        try:
            sys.exit(tool.main(argv[1:]))
        except (ValueError, FileNotFoundError) as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
    try:
        check_config_files(argv)
        with STOP.handling():
            PlatformCLI(args=args)
    except Stopped as stop:
        finish_wandb(exit_code=stop.exit_code)
        if stop.again:
            print(f"stopped by a second {stop}, without saving: the last checkpoint saved before is whole; resume with --ckpt_path last",
                  file=sys.stderr, flush=True)  # fmt: skip
        elif stop.checkpoint is None:
            print(f"stopped by {stop}: nothing was trained, nothing to save", file=sys.stderr, flush=True)
        else:
            run = run_dir_of(stop.checkpoint)
            print(f"stopped by {stop} at step {stop.step}: saved {stop.checkpoint}; resume with the same command and --ckpt_path {run}",
                  file=sys.stderr, flush=True)  # fmt: skip
        sys.exit(stop.exit_code)
    except ArgumentError as err:  # the config or the command line does not parse (parsers do not exit, see __init__)
        if os.environ.get("PLATFORM_DEBUG"):
            raise
        print(f"error: {one_line(str(err), argv)}  (see --help)", file=sys.stderr)
        sys.exit(2)
    except (ValueError, FileNotFoundError, MisconfigurationException) as err:
        finish_wandb(exit_code=2)
        if os.environ.get("PLATFORM_DEBUG"):
            raise
        while isinstance(err.__cause__, (ValueError, FileNotFoundError)):  # jsonargparse wraps what a class raised
            err = err.__cause__
        print(f"error: {err}  (PLATFORM_DEBUG=1 shows the traceback)", file=sys.stderr)
        sys.exit(2)
    finish_wandb()
