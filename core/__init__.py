"""The bottom layer: what every part of the platform shares and nothing of ours is imported by.

    core.batches      the batches datamodules yield and tasks consume (named fields, not tuples)
    core.data         DataInfo, what a datamodule tells the model; the Tokenizer protocol
    core.labels       label conventions: UNLABELED (-1), IGNORE (-100)
    core.checks       argument checks of networks and tasks, refused in one line before anything is built
    core.checkpoints  reading checkpoints: weights-only, sharded, format checks, shapes that must fit
    core.assets       files that ship inside installed packages (pretrained models)
    core.compat       every private Lightning and jsonargparse internal the platform relies on

Imports run one way: the CLI (litlab) -> tasks and datamodules -> core; tasks.nets -> core.
tests/test_layers.py enforces it.
"""
