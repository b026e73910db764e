"""A Hugging Face transformer as a backbone, teacher or student: pretrained weights from a packaged
model (``minilm``), a local folder or the Hub, or a fresh one of the same family, resized."""

import contextlib

import torch
from torch import nn

from core.assets import pretrained_dir
from core.checks import fraction, positive
from tasks.nets.pooling import pool

SIZES = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "max_position_embeddings")


class HuggingFace(nn.Module):
    """``transformers.AutoModel`` behind the interface of this platform's text networks:
    ``features(idx, mask)`` gives hidden states ``(B, T, out_dim)``; ``forward`` mean-pools them.

    Args:
        model: ``minilm`` (all-MiniLM-L6-v2, shipped in a package), a model folder, or a Hub name.
        pretrained: load the model's weights; False builds the architecture with fresh weights.
        config: changes to the model's config, such as a smaller student:
            ``{num_hidden_layers: 2, hidden_size: 128, num_attention_heads: 2, intermediate_size: 512}``.
        mlm_head: add the model family's masked-LM head (for ``tasks.MaskedLM``: BERT's transform and a decoder
            tied to the token embeddings), with its pretrained weights where the folder has them, fresh where
            not (the shipped MiniLM has none). The encoder's weights keep their names either way.
        activation_checkpointing: for long contexts: recompute each layer in backward, as ``tasks.nets.GPT``'s option does.
    """

    def __init__(self, model: str = "minilm", pretrained: bool = True, config: dict | None = None, mlm_head: bool = False,
                 activation_checkpointing: bool = False):  # fmt: skip
        super().__init__()
        import transformers  # slow to import: only where a Hugging Face model is used

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        path = pretrained_dir(model)
        with loading(model):
            model_config = transformers.AutoConfig.from_pretrained(path, **(config or {}))
        check_config(model_config)  # before the model is built: a size of 0 builds one without layers, or fails deep inside
        auto = transformers.AutoModelForMaskedLM if mlm_head else transformers.AutoModel
        with loading(model):
            self.model = auto.from_pretrained(path, config=model_config) if pretrained else auto.from_config(model_config)
        self.mlm_head = None
        if mlm_head:  # the encoder as AutoModel names it, and the head beside it, its decoder still tied to the embeddings
            heads = [module for module in self.model.children() if module is not self.model.base_model]
            if len(heads) != 1:
                raise ValueError(f"HuggingFace model={model!r}: {type(self.model).__name__} has no single masked-LM head module: mlm_head is for BERT-like families")
            self.model, self.mlm_head = self.model.base_model, heads[0]
        self.train()  # from_pretrained returns eval mode (the head too), and Lightning keeps the mode a module is built in
        if getattr(self.model, "pooler", None) is not None:
            self.model.pooler = None  # BERT's pooler is trained for next-sentence prediction; we pool ourselves
        self.vocab_size, self.out_dim = model_config.vocab_size, model_config.hidden_size
        self.block_size = getattr(model_config, "max_position_embeddings", None)  # the longest input it embeds
        if activation_checkpointing:
            if not self.model.supports_gradient_checkpointing:
                raise ValueError(f"HuggingFace model={model!r}: {type(self.model).__name__} does not support activation_checkpointing")
            kwargs = {"use_reentrant": False}  # replays the RNG, so dropout masks match
            if hasattr(self.model, "activation_checkpointing_enable"):  # the newer name; gradient_... warns it is deprecated
                self.model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
            else:
                self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)

    def features(self, idx: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(input_ids=idx, attention_mask=mask).last_hidden_state

    def token_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits over the vocabulary of hidden states ``(..., out_dim)``: the masked-LM head."""
        if self.mlm_head is None:
            raise ValueError("HuggingFace mlm_head=False: the network has no head over the vocabulary: expected mlm_head: true")
        return self.mlm_head(hidden)

    def forward(self, idx: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return pool(self.features(idx, mask), mask, "mean")


def check_config(config) -> None:
    """The sizes and dropout probabilities of a Hugging Face config, as the platform's own networks check
    theirs. Sizes go by their common names (``GPT2Config``'s ``n_layer`` is ``config.num_hidden_layers``);
    one a family leaves None (GPT-2's ``n_inner``: 4 times the width) takes that family's default."""
    positive("HuggingFace", **{f"config.{name}": getattr(config, name) for name in SIZES if getattr(config, name, None) is not None})
    dropouts = {k: v for k, v in config.to_dict().items() if ("dropout" in k or k.endswith("pdrop")) and type(v) in (int, float)}
    fraction("HuggingFace", **{f"config.{name}": value for name, value in dropouts.items()})


@contextlib.contextmanager
def loading(model: str):
    """What Hugging Face raises while loading ``model``, as one line that names it."""
    try:
        yield
    except (OSError, TypeError, ValueError) as err:
        raise ValueError(f"HuggingFace model={model!r}: could not load it ({str(err).strip().splitlines()[0]})") from err
