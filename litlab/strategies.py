"""``--trainer.strategy fsdp2``: FSDP2 (``fully_shard``) over every process, on GPUs or CPUs."""

from datetime import timedelta

from lightning.pytorch.strategies import ModelParallelStrategy, StrategyRegistry
from torch.distributed.constants import default_pg_timeout

from core.compat import shard_over_every_process


class FSDP2(ModelParallelStrategy):
    """ModelParallelStrategy with all processes of all nodes sharding one model (data parallel) and no
    tensor parallelism; its ``auto`` sizes would give each node's processes to tensor parallelism,
    which the tasks do not use. The tasks shard themselves in ``configure_model`` (``tasks.base.shard``).

    Args:
        save_distributed_checkpoint: each process saves its own shard (``last.ckpt/`` is a directory);
            false gathers one full checkpoint file on rank 0.
    """

    def __init__(
        self, save_distributed_checkpoint: bool = True, process_group_backend: str | None = None, timeout: timedelta | None = default_pg_timeout
    ):
        super().__init__("auto", 1, save_distributed_checkpoint, process_group_backend, timeout)

    def setup_environment(self) -> None:
        shard_over_every_process(self)
        super().setup_environment()


StrategyRegistry.register("fsdp2", FSDP2, description="FSDP2 (fully_shard) over every process", override=True)
