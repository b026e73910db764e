"""Splits of labelled data: a held-out evaluation set per class, and few labels to train with.

Label conventions shared by the datamodules and tasks: ``-1`` marks an example without a label (it
can still be an input, e.g. to a distillation teacher); ``-100`` marks a position not to predict.
"""

import numpy as np

UNLABELED = -1
IGNORE = -100  # cross-entropy's ignore_index


def check_label_budget(labels_per_class: int | None, label_fraction: float | None) -> None:
    if labels_per_class is not None and label_fraction is not None:
        raise ValueError(f"labels_per_class={labels_per_class}, label_fraction={label_fraction}: expected one of them, not both")
    if labels_per_class is not None and labels_per_class < 1:
        raise ValueError(f"labels_per_class={labels_per_class}: expected a positive int")
    if label_fraction is not None and not 0 < label_fraction <= 1:
        raise ValueError(f"label_fraction={label_fraction}: expected a number in (0, 1]")


def split_by_class(
    labels: np.ndarray, val_fraction: float, labels_per_class: int | None, label_fraction: float | None, seed: int
) -> dict[str, np.ndarray]:
    """Indices of ``val`` (``val_fraction`` of each class), ``train`` (``labels_per_class`` of each
    class, or ``label_fraction`` of the rest, or all of the rest) and ``unlabeled`` (what is left).

    Stratified and seeded: the same ``seed`` always holds out the same examples, so runs that differ
    in their model or their number of labels are evaluated on the same set."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction={val_fraction}: expected a number between 0 and 1")
    rng = np.random.default_rng(seed)
    val, rest = [], []
    for c in np.unique(labels[labels >= 0]):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = max(1, round(len(idx) * val_fraction))
        val.append(idx[:n_val])
        rest.append(idx[n_val:])
    train, unlabeled = few_labels(labels, np.concatenate(rest), labels_per_class, label_fraction, seed)
    return {"val": rng.permutation(np.concatenate(val)), "train": train, "unlabeled": np.concatenate([unlabeled, np.flatnonzero(labels < 0)])}


def few_labels(labels: np.ndarray, idx: np.ndarray, labels_per_class: int | None, label_fraction: float | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``idx`` into the examples to train with (``labels_per_class`` of each class, or
    ``label_fraction`` of each, or all) and the rest, both shuffled (a sorted order would put one
    class in every early batch)."""
    check_label_budget(labels_per_class, label_fraction)
    rng = np.random.default_rng(seed)
    chosen, rest = [], []
    for c in np.unique(labels[idx][labels[idx] >= 0]):
        members = rng.permutation(idx[labels[idx] == c])
        if labels_per_class is not None and labels_per_class > len(members):
            raise ValueError(f"labels_per_class={labels_per_class}: class {c} has only {len(members)} examples outside the held-out splits")
        n = labels_per_class if labels_per_class is not None else len(members) if label_fraction is None else max(1, round(len(members) * label_fraction))
        chosen.append(members[:n])
        rest.append(members[n:])
    empty = np.array([], dtype=np.int64)
    return rng.permutation(np.concatenate(chosen or [empty])), rng.permutation(np.concatenate(rest or [empty]))
