"""Networks, injected into tasks through the config (``class_path``/``init_args``)."""

from tasks.nets.gpt import GPT

__all__ = ["GPT"]
