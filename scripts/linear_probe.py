"""Linear-probe accuracy of an image encoder: a trained checkpoint against the same encoder randomly
initialized. Features are frozen; a logistic regression is fitted on the training split and scored
on the validation split, identically for both.

    python scripts/linear_probe.py --config configs/simclr.yaml --ckpt runs/simclr/checkpoints/last.ckpt

Run from the repo root (the configs are read from configs/)."""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from litlab.cli import PlatformCLI  # noqa: E402


@torch.no_grad()
def features(encoder: torch.nn.Module, dataset) -> tuple[torch.Tensor, torch.Tensor]:
    encoder.eval()
    xs, ys = zip(*(dataset[i] for i in range(len(dataset))))
    x, y = torch.stack(xs), torch.stack(ys)
    return torch.cat([encoder(chunk) for chunk in x.split(512)]), y


def probe_accuracy(encoder: torch.nn.Module, train_set, val_set, num_classes: int, steps: int = 500) -> float:
    (x_train, y_train), (x_val, y_val) = features(encoder, train_set), features(encoder, val_set)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_val = (x_train - mean) / std, (x_val - mean) / std
    torch.manual_seed(0)
    probe = torch.nn.Linear(x_train.size(1), num_classes)
    optimizer = torch.optim.Adam(probe.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(steps):  # full batch: the features are few
        optimizer.zero_grad()
        F.cross_entropy(probe(x_train), y_train).backward()
        optimizer.step()
    return (probe(x_val).argmax(1) == y_val).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--ckpt", required=True, help="a checkpoint of that config")
    parser.add_argument("overrides", nargs="*", help="further CLI arguments, e.g. --data.init_args.source digits")
    args = parser.parse_args()
    cli = PlatformCLI(args=["--config", args.config, "--trainer.logger", "false", *args.overrides], run=False)
    cli.datamodule.setup("fit")
    train_set, val_set = cli.datamodule.splits["train"], cli.datamodule.splits["val"]
    classes = cli.datamodule.num_classes
    random_init = probe_accuracy(cli.model.encoder, train_set, val_set, classes)
    state = torch.load(args.ckpt, map_location="cpu", weights_only=True)["state_dict"]
    cli.model.load_state_dict(state)
    trained = probe_accuracy(cli.model.encoder, train_set, val_set, classes)
    print(f"| encoder | linear-probe val accuracy |\n|---|---|\n| random init | {random_init:.3f} |\n| {args.ckpt} | {trained:.3f} |")


if __name__ == "__main__":
    main()
