"""Splits of data: held-out shares, chosen by a seed; a held-out set per class, and few labels to train with."""

import numpy as np

from core.labels import UNLABELED


def check_fraction(name: str, value: float, upper_inclusive: bool = False) -> None:
    """A share of the data: strictly between 0 and 1 (or up to 1 inclusive)."""
    if not (0 < value <= 1 if upper_inclusive else 0 < value < 1):
        raise ValueError(f"{name}={value}: expected a number in (0, {'1]' if upper_inclusive else '1)'}")


def check_label_budget(labels_per_class: int | None, label_fraction: float | None) -> None:
    if labels_per_class is not None and label_fraction is not None:
        raise ValueError(f"labels_per_class={labels_per_class}, label_fraction={label_fraction}: expected one of them, not both")
    if labels_per_class is not None and labels_per_class < 1:
        raise ValueError(f"labels_per_class={labels_per_class}: expected a positive int")
    if label_fraction is not None:
        check_fraction("label_fraction", label_fraction, upper_inclusive=True)


def held_out(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the held-out examples (``val_fraction`` of each class, at least one) and of the rest.

    The one split of a labelled corpus: a classifier is scored on the held-out part, and a language model
    pretrained on the same corpus (``datamodules.TextDataModule``) holds out exactly these documents, so that
    pretraining never reads an article a classifier is scored on. Unlabelled data is one class."""
    check_fraction("val_fraction", val_fraction)
    rng = np.random.default_rng(seed)
    val, rest = [], []
    for c in np.unique(labels[labels != UNLABELED]):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = max(1, round(len(idx) * val_fraction))
        val.append(idx[:n_val])
        rest.append(idx[n_val:])
    return rng.permutation(np.concatenate(val)), np.concatenate(rest)


def split_by_class(
    labels: np.ndarray, val_fraction: float, labels_per_class: int | None, label_fraction: float | None, seed: int, labels_seed: int | None = None
) -> dict[str, np.ndarray]:
    """Indices of ``val`` (``held_out``), ``train`` (``labels_per_class`` of each class, or
    ``label_fraction`` of the rest, or all of the rest) and ``unlabeled`` (what is left).

    Stratified and seeded: the same ``seed`` always holds out the same examples, so runs that differ
    in their model or their number of labels are evaluated on the same set; ``labels_seed`` (default:
    ``seed``) chooses the few labelled ones, so that runs can differ in their labels alone."""
    val, rest = held_out(labels, val_fraction, seed)
    train, unlabeled = few_labels(labels, rest, labels_per_class, label_fraction, seed if labels_seed is None else labels_seed)
    return {"val": val, "train": train, "unlabeled": np.concatenate([unlabeled, np.flatnonzero(labels == UNLABELED)])}


def few_labels(labels: np.ndarray, idx: np.ndarray, labels_per_class: int | None, label_fraction: float | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``idx`` into the examples to train with (``labels_per_class`` of each class, or
    ``label_fraction`` of each, or all) and the rest, both shuffled (a sorted order would put one
    class in every early batch)."""
    check_label_budget(labels_per_class, label_fraction)
    rng = np.random.default_rng(seed)
    chosen, rest = [], []
    for c in np.unique(labels[idx][labels[idx] != UNLABELED]):
        members = rng.permutation(idx[labels[idx] == c])
        if labels_per_class is not None and labels_per_class > len(members):
            raise ValueError(f"labels_per_class={labels_per_class}: class {c} has only {len(members)} examples outside the held-out splits")
        n = labels_per_class if labels_per_class is not None else len(members) if label_fraction is None else max(1, round(len(members) * label_fraction))
        chosen.append(members[:n])
        rest.append(members[n:])
    empty = np.array([], dtype=np.int64)
    return rng.permutation(np.concatenate(chosen or [empty])), rng.permutation(np.concatenate(rest or [empty]))
