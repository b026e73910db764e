"""Label conventions shared by the datamodules and the tasks."""

UNLABELED = -1  # an example without a label: still an input (a distillation teacher labels it), never a target
IGNORE = -100  # a position not to predict (prompt, padding): cross-entropy's ignore_index
