"""One LightningModule per objective; the networks they share live in tasks.nets."""

from tasks.causal_lm import CausalLM
from tasks.reconstruction import Reconstruction

__all__ = ["CausalLM", "Reconstruction"]
