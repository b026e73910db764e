"""One LightningModule per objective; the networks they share live in tasks.nets."""

from tasks.adversarial import GAN
from tasks.causal_lm import CausalLM
from tasks.contrastive import Contrastive
from tasks.reconstruction import Reconstruction

__all__ = ["CausalLM", "Contrastive", "GAN", "Reconstruction"]
