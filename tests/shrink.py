"""One rule that makes any config of configs/ run in seconds, instead of a table of overrides per config.

Arguments are shrunk by name wherever they appear (networks, tasks, data): layers, widths, contexts,
batches, text lengths, labels. Hugging Face networks become a tiny BERT of the same vocabulary, built
without pretrained weights. A checkpoint a config starts from, ``runs/<name>/checkpoints/last.ckpt``
(a backbone, a teacher, an init_ckpt, a tokenizer), comes from ``configs/<name>.yaml`` shrunk by the
same rule, so that architectures still match."""

import copy
import os
import re

import yaml

from tests.conftest import ROOT

AT_MOST = {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 128, "batch_size": 4, "max_length": 32, "labels_per_class": 4, "num_workers": 0}
OFF = ("compile",)
TINY_BERT = {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}
CHECKPOINT = re.compile(r"^runs/([\w.-]+)/checkpoints/last\.ckpt$")


def shrink(value, runs: str, token_cache: str, needs: set[str]):
    """A shrunk copy of a config (its parsed YAML); the names of the configs whose checkpoints it
    needs are added to ``needs``, and their paths point into ``runs``."""
    if isinstance(value, list):
        return [shrink(v, runs, token_cache, needs) for v in value]
    if isinstance(value, str) and (match := CHECKPOINT.match(value)):
        needs.add(match.group(1))
        return os.path.join(runs, match.group(1), "checkpoints", "last.ckpt")
    if not isinstance(value, dict):
        return value
    node = {k: shrink(v, runs, token_cache, needs) for k, v in value.items()}
    for key, most in AT_MOST.items():
        if isinstance(node.get(key), int) and not isinstance(node[key], bool):
            node[key] = min(node[key], most)
    for key in OFF:
        if key in node:
            node[key] = False
    init_args = node.get("init_args")
    if node.get("class_path") == "tasks.nets.HuggingFace":
        init_args.update(pretrained=False, config=TINY_BERT)
    if node.get("class_path") == "datamodules.TextDataModule":
        init_args["cache_dir"] = token_cache
    return node


def shrunk_config(name: str, directory: str, runs: str, token_cache: str) -> tuple[str, set[str]]:
    """``configs/<name>.yaml`` shrunk, written to ``directory/<name>.yaml`` (so the run keeps the name);
    returns its path and the configs it needs run first."""
    with open(os.path.join(ROOT, "configs", f"{name}.yaml")) as f:
        config = yaml.safe_load(f)
    needs: set[str] = set()
    small = shrink(copy.deepcopy(config), runs, token_cache, needs)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{name}.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(small, f)
    return path, needs
