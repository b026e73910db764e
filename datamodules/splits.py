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


def check_held_out(val_fraction: float, test_fraction: float) -> None:
    """The shares held out for validation (in (0, 1)) and testing (in [0, 1); 0: no test split), leaving data to train on."""
    check_fraction("val_fraction", val_fraction)
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction={test_fraction}: expected a number in [0, 1) (0: no test split)")
    if val_fraction + test_fraction >= 1:
        raise ValueError(f"val_fraction={val_fraction}, test_fraction={test_fraction}: expected shares that leave data to train on (sum < 1)")


def share_of_held_out(n_held: int, val_fraction: float, test_fraction: float) -> int:
    """How many of ``n_held`` held-out examples go to validation (the rest to testing): their share of the two
    fractions, at least one."""
    return max(1, round(n_held * val_fraction / (val_fraction + test_fraction)))


def held_out(labels: np.ndarray, val_fraction: float, seed: int, test_fraction: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the validation examples, of the test examples, and of the rest.

    ``val_fraction + test_fraction`` of each class (at least one) is held out, then split into validation (its
    ``val_fraction`` share, at least one: ``share_of_held_out``) and test (the rest). The held-out set depends on
    the sum alone, so that splitting it leaves every training set as it was with ``val_fraction`` alone at that sum.

    The one split of a labelled corpus: a classifier is scored on the held-out part, and a language model
    pretrained on the same corpus (``datamodules.TextDataModule``) holds out exactly these documents, so that
    pretraining never reads an article a classifier is validated or tested on. Unlabelled data is one class."""
    check_held_out(val_fraction, test_fraction)
    rng = np.random.default_rng(seed)
    val, test, rest = [], [], []
    for c in np.unique(labels[labels != UNLABELED]):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_held = max(1, round(len(idx) * (val_fraction + test_fraction)))
        n_val = share_of_held_out(n_held, val_fraction, test_fraction)
        val.append(idx[:n_val])
        test.append(idx[n_val:n_held])
        rest.append(idx[n_held:])
    return rng.permutation(np.concatenate(val)), rng.permutation(np.concatenate(test)), np.concatenate(rest)


def split_by_class(
    labels: np.ndarray,
    val_fraction: float,
    labels_per_class: int | None,
    label_fraction: float | None,
    seed: int,
    labels_seed: int | None = None,
    test_fraction: float = 0.0,
) -> dict[str, np.ndarray]:
    """Indices of ``val`` and ``test`` (``held_out``), ``train`` (``labels_per_class`` of each class, or
    ``label_fraction`` of the rest, or all of the rest) and ``unlabeled`` (what is left).

    Stratified and seeded: the same ``seed`` always holds out the same examples, so runs that differ
    in their model or their number of labels are evaluated on the same set; ``labels_seed`` (default:
    ``seed``) chooses the few labelled ones, so that runs can differ in their labels alone."""
    val, test, rest = held_out(labels, val_fraction, seed, test_fraction)
    train, unlabeled = few_labels(labels, rest, labels_per_class, label_fraction, seed if labels_seed is None else labels_seed)
    return {"val": val, "test": test, "train": train, "unlabeled": np.concatenate([unlabeled, np.flatnonzero(labels == UNLABELED)])}


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
