"""What core.compat relies on in Lightning's and jsonargparse's internals, one test per function: an
upgrade that changes one of them fails here, not in a user's run."""

import inspect

import lightning as L
import pytest
import torch
import torch.distributed.checkpoint as dcp
import yaml
from jsonargparse import ActionConfigFile, ArgumentParser
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters_context
from lightning.pytorch.strategies import ModelParallelStrategy, model_parallel
from torch import nn

from core import compat
from litlab.cli import PlatformCLI, main
from tests.conftest import ROOT


class _Stop(Exception):
    """Raised to stop a CLI or a strategy right where a test has what it needs."""


class Inner(L.LightningModule):
    def __init__(self, width: int = 4):
        super().__init__()
        compat.save_hyperparameters(self, inspect.currentframe())


class Outer(L.LightningModule):
    def __init__(self, lr: float = 0.1, net: nn.Module | dict | None = None, kind: type = nn.Linear):
        super().__init__()
        compat.save_hyperparameters(self, inspect.currentframe())


def test_save_hyperparameters():
    """``_given_hyperparameters``: LightningCLI's config reaches the task it builds, not the tasks inside it."""
    net = {"class_path": "torch.nn.Linear", "init_args": {"in_features": 2, "out_features": 3}}
    given = {"_class_path": f"{__name__}.Outer", "lr": 0.5, "net": net}
    with _given_hyperparameters_context(hparams=given, instantiator="x"):
        inner = Inner(width=7)  # built in the outer task's context, as jsonargparse builds a distillation's student
        outer = Outer(lr=0.5, net=nn.Linear(2, 3))
    assert dict(inner.hparams) == {"width": 7}  # its own arguments, not the outer task's config
    assert dict(outer.hparams) == {**given, "_instantiator": "x"}  # the config again, the network in it as a config
    assert inner.hparams_initial == inner.hparams and outer.hparams_initial == outer.hparams

    built_in_python = Outer(lr=0.2, net=nn.Linear(2, 3), kind=nn.Linear)
    assert dict(built_in_python.hparams) == {"lr": 0.2}  # a network and a class are not plain data
    assert built_in_python.hparams_initial == {"lr": 0.2}


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled")  # one process, as intended
def test_load_distributed_checkpoint(tmp_path):
    """``_load_distributed_checkpoint``: shards and Lightning's ``meta.pt`` consolidated into one dict."""
    weights = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(3)}
    dcp.save({"state_dict": weights}, checkpoint_id=str(tmp_path))  # one process: no process group needed
    torch.save({"global_step": 3, "hyper_parameters": {"lr": 0.5}}, tmp_path / "meta.pt")  # what Lightning saves beside
    checkpoint = compat.load_distributed_checkpoint(str(tmp_path))
    assert checkpoint["global_step"] == 3 and checkpoint["hyper_parameters"] == {"lr": 0.5}
    assert checkpoint["state_dict"].keys() == weights.keys()
    for name, tensor in weights.items():
        assert torch.equal(checkpoint["state_dict"][name], tensor)


class ParsedCLI(PlatformCLI):
    def before_instantiate_classes(self) -> None:
        raise _Stop(self)  # parsed, nothing built


def _parsed_cli(*args: str) -> PlatformCLI:
    with pytest.raises(_Stop) as stop:
        ParsedCLI(args=list(args), run=args[0] in ("fit", "validate", "test", "predict"))
    return stop.value.args[0]


@pytest.fixture
def repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setattr("sys.argv", ["python -m platform"])


def test_subcommand_parser(repo_root, tmp_path):
    """``LightningCLI._parser``: the parser of a subcommand dumps and saves that subcommand's config."""
    cli = _parsed_cli("fit", "--config", "configs/gpt_nano.yaml", "--run.dir", str(tmp_path))
    parser = compat.subcommand_parser(cli, "fit")
    dumped = yaml.safe_load(parser.dump(cli.config["fit"], skip_none=False))
    assert dumped["model"]["class_path"] == "tasks.CausalLM" and dumped["run"]["dir"] == str(tmp_path)
    parser.save(cli.config["fit"], str(tmp_path / "config.yaml"), skip_none=False, overwrite=False)  # as before_fit does
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["trainer"]["max_steps"] == 20

    cli = _parsed_cli("--config", "configs/gpt_nano.yaml", "--run.dir", str(tmp_path))  # run=False: no subcommands
    assert compat.subcommand_parser(cli, None) is cli.parser
    assert yaml.safe_load(cli.parser.dump(cli.config))["model"]["class_path"] == "tasks.CausalLM"


def test_shard_over_every_process(monkeypatch):
    """``ModelParallelStrategy._data_parallel_size``: the data-parallel size its device mesh is built with."""
    strategy = ModelParallelStrategy("auto", 1)
    strategy.num_nodes, strategy.parallel_devices = 2, [torch.device("cpu")] * 4
    assert strategy.num_processes == 4
    compat.shard_over_every_process(strategy)
    assert strategy._data_parallel_size == 8

    def mesh(data_parallel_size, tensor_parallel_size, world_size, device):
        raise _Stop(data_parallel_size, tensor_parallel_size)

    monkeypatch.setattr(model_parallel, "_setup_device_mesh", mesh)
    strategy.accelerator, strategy._setup_distributed = CPUAccelerator(), lambda: None  # no process group
    with pytest.raises(_Stop) as stop:
        strategy.setup_environment()
    assert stop.value.args == (8, 1)  # every process data parallel; "auto" would have given 2


def _parser_with_subcommand() -> ArgumentParser:
    parser, sub = ArgumentParser(exit_on_error=False), ArgumentParser(exit_on_error=False)
    for p in (parser, sub):
        p.add_argument("--config", action=ActionConfigFile)
    sub.add_argument("--x", type=int, default=1)
    sub.add_argument("--y", type=str, default="a")
    parser.add_subcommands().add_subcommand("sub", sub)
    return parser


def test_deferred_print_config(capsys):
    """``_ActionPrintConfig.skip_print_config`` and ``parser.print_config``: the request, held back."""
    parser = _parser_with_subcommand()
    with compat.deferred_print_config(parser) as request:
        config = parser.parse_args(["sub", "--print_config=skip_default", "--x", "2"])  # no exit
    assert capsys.readouterr().out == ""
    assert not hasattr(parser, "print_config")
    subparser = request.pop("subparser")
    assert request.get("skip_default") is True
    assert yaml.safe_load(subparser.dump(config["sub"], **request)) == {"x": 2}  # as the CLI prints it

    with compat.deferred_print_config(parser) as request:
        parser.parse_args(["sub", "--x", "2"])
    assert request == {}


def test_print_config_shows_what_the_data_fills_in(repo_root, capsys):
    """``deferred_print_config`` in the CLI: ``--print_config`` prints the config the data completed."""
    with pytest.raises(SystemExit) as exit:
        main(["fit", "--config", "configs/gpt_nano.yaml", "--print_config"])
    assert exit.value.code == 0
    net = yaml.safe_load(capsys.readouterr().out)["model"]["init_args"]["net"]["init_args"]
    assert net["vocab_size"] == 261 and net["block_size"] == 64  # from the bytes tokenizer and the data's windows


def test_is_compiled():
    """``nn.Module._compiled_call_impl``: set by ``module.compile()``, before any call compiles anything."""
    module = nn.Linear(2, 2)
    assert not compat.is_compiled(module)
    module.compile()
    assert compat.is_compiled(module)
