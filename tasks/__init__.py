"""One LightningModule per objective; the networks they share live in tasks.nets."""

from tasks.adversarial import GAN
from tasks.causal_lm import CausalLM
from tasks.classification import Classification
from tasks.contrastive import Contrastive
from tasks.distillation import Distillation
from tasks.masked_lm import MaskedLM
from tasks.reconstruction import Reconstruction

__all__ = ["CausalLM", "Classification", "Contrastive", "Distillation", "GAN", "MaskedLM", "Reconstruction"]
