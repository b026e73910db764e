"""Networks, injected into tasks through the config (``class_path``/``init_args``)."""

from tasks.nets.gpt import GPT, GPTEncoder
from tasks.nets.huggingface import HuggingFace
from tasks.nets.vision import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder

__all__ = ["GPT", "GPTEncoder", "HuggingFace", "ConvEncoder", "ConvDecoder", "MLPEncoder", "MLPDecoder"]
