"""One LightningModule per objective; the networks they share live in tasks.nets."""

from tasks.causal_lm import CausalLM

__all__ = ["CausalLM"]
