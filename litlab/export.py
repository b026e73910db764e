"""``python -m platform export --ckpt_path runs/gpt_small --to exports/gpt_small``: a run's network as a folder
that Hugging Face ``transformers`` loads (``from_pretrained``), with the run's tokenizer (``AutoTokenizer``).

What a checkpoint's main network becomes, the first that matches:

    tasks.CausalLM, tasks.nets.GPT, learned positions + LayerNorm     -> GPT2LMHeadModel (GELU or ReLU² MLP)
    tasks.CausalLM, tasks.nets.GPT, rotary positions + RMSNorm        -> LlamaForCausalLM (SwiGLU, ReLU² or GELU MLP)
    tasks.MaskedLM, tasks.nets.HuggingFace with mlm_head              -> its family's masked LM (BertForMaskedLM)
    tasks.Classification, a BERT tasks.nets.HuggingFace backbone      -> PooledBertForSequenceClassification, code written
                                                                         into the folder (trust_remote_code=True)
    any other task, tasks.nets.HuggingFace                            -> its own class (BertModel)
    anything else: QK-norm, soft-capped logits, a bidirectional GPT,  -> the platform's network as it is: model.safetensors
    a GPT classifier, image networks...                                  and config.json (its class_path/init_args)

The folder is written beside ``--to``, loaded back from there, and its outputs compared with the platform
network's (fp32, within 1e-4) and its tokenizer's ids with the platform's; only then is it renamed
to ``--to``. A failure leaves nothing behind, and an existing path is never written over.
"""

import argparse
import inspect
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from core.checkpoints import read_checkpoint, record, saved_tokenizer, state_under
from datamodules.tokenizers import CLS, EOS, MASK, PAD, SEP, ByteTokenizer, tokenizer_from_str
from litlab.runs import add_checkpoint_arguments, find_checkpoint, run_dir_of
from tasks.causal_lm import CausalLM
from tasks.checkpoints import build, main_network, main_task
from tasks.classification import Classification
from tasks.nets.gpt import GPT
from tasks.nets.huggingface import HuggingFace
from tasks.nets.pooling import pool

TOLERANCE = 1e-4  # the largest difference allowed between the exported model's outputs and the platform's (fp32, CPU)
SAMPLE_TEXT = "Hello world! The government said 42 people were there."  # both tokenizers must give the same ids for it
ROPE_THETA = 10_000.0  # tasks.nets.gpt.Rotary's base: a GPT never sets another
UNK = "[UNK]"  # a WordPiece's unknown token (MiniLM's)


@dataclass
class Source:
    """What a checkpoint holds: its main network rebuilt and loaded, the task that trained it, the tokenizer."""

    path: str
    step: int | None
    network: nn.Module
    where: str  # the main network's place in the task: net, encoder, backbone, student.net...
    spec: dict  # the network's config: class_path/init_args
    task: type  # the task that holds the main network (a distillation's: its student's)
    task_args: dict
    head: dict[str, torch.Tensor]  # a classifier's head, Sequential(Dropout, Linear): its state_dict
    tokenizer: object | None  # a datamodules.tokenizers tokenizer; None for an image task


@dataclass
class Conversion:
    """The platform network as a Hugging Face model, and how to check that the two compute the same."""

    summary: str  # the one line about the architecture: the class (and how it was mapped), or why none matches
    loader: str | None = None  # the transformers Auto class that loads the folder; None: the platform's own files
    platform: Callable | None = None  # (ids, mask) -> the platform's outputs, which the exported model's must match
    model: nn.Module | None = None  # a transformers model holding the weights, which save_pretrained writes
    write: Callable | None = None  # or a function of the folder that writes the model's files itself
    output: str = "logits"  # the attribute of the model's output compared with the platform's
    masked: bool = False  # the inputs take an attention mask (encoders): the check pads one of its two rows
    remote_code: bool = False  # the folder holds its model's code (loaded with trust_remote_code=True)


# -- reading a checkpoint -----------------------------------------------------------------------------------------


def read_source(path: str) -> Source:
    checkpoint = read_checkpoint(path, what="export --ckpt_path")
    network, spec = main_network(checkpoint, f"export --ckpt_path {path}")
    where = record(checkpoint)["main_network"]
    task, task_args, prefix = main_task(checkpoint)  # the task that holds the main network (a distillation's student)
    head = state_under(checkpoint, f"{prefix}head") if issubclass(task, Classification) else {}
    tokenizer = saved_tokenizer(checkpoint)
    tokenizer = tokenizer_from_str(tokenizer) if tokenizer is not None else None
    return Source(path, checkpoint.get("global_step"), network.eval(), where, spec, task, task_args, head, tokenizer)


def gpt_args(spec: dict) -> dict:
    """A GPT's arguments, its defaults filled in (a config saved by an older version may leave some out)."""
    defaults = {k: p.default for k, p in inspect.signature(GPT.__init__).parameters.items() if p.default is not inspect.Parameter.empty}
    return {**defaults, **spec.get("init_args", {})}


def class_names(ckpt_path: str, num_classes: int) -> tuple[list[str], str]:
    """A classifier's class names, and where they come from. A checkpoint does not store them, its run's data
    does: the datamodule is rebuilt from the run's config.yaml for its ``info.classes``. Where that cannot be
    done, the labels are ``LABEL_<i>``, as Hugging Face names them by default."""
    import lightning as L
    import yaml

    fallback = [f"LABEL_{i}" for i in range(num_classes)]
    run = run_dir_of(ckpt_path)
    config = os.path.join(run, "config.yaml") if run else None
    if not config or not os.path.isfile(config):
        return fallback, "LABEL_<i>: no run config.yaml beside the checkpoint to read the class names from"
    try:
        with open(config) as f:
            classes = list(build(yaml.safe_load(f)["data"], L.LightningDataModule).info.classes)
    except (KeyError, TypeError, ValueError, OSError) as err:
        return fallback, f"LABEL_<i>: the data of {config} did not load ({str(err).strip().splitlines()[0]})"
    if len(classes) != num_classes:
        return fallback, f"LABEL_<i>: the data of {config} has {len(classes)} classes, the head {num_classes}"
    return classes, f"the classes of {config}'s data"


# -- the mappings, one per architecture -------------------------------------------------------------------------


def linear(ours: dict, src: str, dst: str, bias: bool, conv1d: bool = False) -> dict:
    """A Linear's weight (and bias) under Hugging Face's name; a bias the platform's layer lacks (``bias=False``)
    is zero. GPT-2's Conv1D stores its weight as (in, out), the transpose of a Linear's."""
    weight = ours[f"{src}.weight"]
    out = {f"{dst}.weight": weight.t() if conv1d else weight}
    if bias:
        out[f"{dst}.bias"] = ours.get(f"{src}.bias", torch.zeros(weight.size(0)))
    return out


def layer_norm(ours: dict, src: str, dst: str) -> dict:
    weight = ours[f"{src}.weight"]
    return {f"{dst}.weight": weight, f"{dst}.bias": ours.get(f"{src}.bias", torch.zeros_like(weight))}


def gpt2(net: GPT, args: dict, special_ids: dict) -> nn.Module:
    """GPT-2 computes the platform's GPT-2 recipe exactly: pre-LayerNorm blocks (eps 1e-5, nn.LayerNorm's), learned
    positions, a fused qkv in the same (q, k, v) x heads order, a 4x MLP."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=net.vocab_size, n_positions=net.block_size, n_embd=args["n_embd"], n_layer=args["n_layer"], n_head=args["n_head"],
        activation_function=args["activation"],  # "gelu" is exact erf GELU, F.gelu (GPT-2's own "gelu_new" is tanh's); "relu2" ReLU²
        layer_norm_epsilon=1e-5, resid_pdrop=args["dropout"], embd_pdrop=args["dropout"], attn_pdrop=args["dropout"],
        tie_word_embeddings=args["tie_embeddings"], **special_ids,
    )  # fmt: skip
    ours = net.state_dict()
    state = {
        "transformer.wte.weight": ours["wte.weight"],
        "transformer.wpe.weight": ours["wpe.weight"],
        "lm_head.weight": ours["lm_head.weight"],
    }
    for i in range(args["n_layer"]):
        src, dst = f"blocks.{i}", f"transformer.h.{i}"
        state |= layer_norm(ours, f"{src}.ln_1", f"{dst}.ln_1") | layer_norm(ours, f"{src}.ln_2", f"{dst}.ln_2")
        for a, b in (("attn.qkv", "attn.c_attn"), ("attn.proj", "attn.c_proj"), ("mlp.fc", "mlp.c_fc"), ("mlp.proj", "mlp.c_proj")):
            state |= linear(ours, f"{src}.{a}", f"{dst}.{b}", bias=True, conv1d=True)
    state |= layer_norm(ours, "ln_f", "transformer.ln_f")
    model = GPT2LMHeadModel(config)
    model.load_state_dict(state)
    return model


def llama(net: GPT, args: dict, special_ids: dict) -> tuple[nn.Module, str]:
    """Llama computes the platform's rotary + RMSNorm recipe exactly: Rotary rotates the two halves of each head as
    Llama's rotate_half does (base 10,000), nn.RMSNorm() takes float32's machine epsilon, qkv splits into q, k, v.
    Returns the model and how its MLP was mapped."""
    from transformers import LlamaConfig, LlamaForCausalLM

    gated, bias = args["activation"] == "swiglu", args["bias"]
    hidden = net.blocks[0].mlp.proj.in_features
    config = LlamaConfig(
        vocab_size=net.vocab_size, hidden_size=args["n_embd"], intermediate_size=hidden, num_hidden_layers=args["n_layer"],
        num_attention_heads=args["n_head"], num_key_value_heads=args["n_head"], head_dim=args["n_embd"] // args["n_head"],
        hidden_act="silu" if gated else args["activation"], max_position_embeddings=net.block_size,
        rms_norm_eps=torch.finfo(torch.float32).eps, rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA},
        attention_bias=bias, mlp_bias=bias or not gated, attention_dropout=args["dropout"], tie_word_embeddings=args["tie_embeddings"],
        **special_ids,
    )  # fmt: skip
    ours = net.state_dict()
    state = {
        "model.embed_tokens.weight": ours["wte.weight"],
        "model.norm.weight": ours["ln_f.weight"],
        "lm_head.weight": ours["lm_head.weight"],
    }
    for i in range(args["n_layer"]):
        src, dst = f"blocks.{i}", f"model.layers.{i}"
        state[f"{dst}.input_layernorm.weight"] = ours[f"{src}.ln_1.weight"]
        state[f"{dst}.post_attention_layernorm.weight"] = ours[f"{src}.ln_2.weight"]
        for part in ("weight", "bias") if bias else ("weight",):  # qkv's rows: (q, k, v), each heads x head_dim as Llama's projections
            for name, tensor in zip("qkv", ours[f"{src}.attn.qkv.{part}"].chunk(3)):
                state[f"{dst}.self_attn.{name}_proj.{part}"] = tensor
        state |= linear(ours, f"{src}.attn.proj", f"{dst}.self_attn.o_proj", bias)
        if gated:  # SwiGLU: fc's output chunks into (gate, up), as the platform's MLP splits it
            for part in ("weight", "bias") if bias else ("weight",):
                state[f"{dst}.mlp.gate_proj.{part}"], state[f"{dst}.mlp.up_proj.{part}"] = ours[f"{src}.mlp.fc.{part}"].chunk(2)
        else:  # ReLU² or GELU: Llama's down(act(gate(x)) * up(x)) with up(x) = 1 (weight 0, bias 1) is the platform's proj(act(fc(x)))
            state |= linear(ours, f"{src}.mlp.fc", f"{dst}.mlp.gate_proj", bias=True)
            state[f"{dst}.mlp.up_proj.weight"] = torch.zeros_like(ours[f"{src}.mlp.fc.weight"])
            state[f"{dst}.mlp.up_proj.bias"] = torch.ones(hidden)
        state |= linear(ours, f"{src}.mlp.proj", f"{dst}.mlp.down_proj", bias=config.mlp_bias)
    model = LlamaForCausalLM(config)
    model.load_state_dict(state)
    how = "SwiGLU MLP" if gated else f"{args['activation']} MLP as Llama's gated one with up_proj(x) = 1 (weight 0, bias 1)"
    return model, how


def masked_lm(net: HuggingFace) -> nn.Module:
    """The network's family's masked-LM class: the platform keeps that class's encoder and head as they are."""
    from transformers import AutoModelForMaskedLM

    model = AutoModelForMaskedLM.from_config(net.model.config)
    head = next(name for name, module in model.named_children() if module is not model.base_model)
    state = {f"{model.base_model_prefix}.{k}": v for k, v in net.model.state_dict().items()}
    model.load_state_dict(state | {f"{head}.{k}": v for k, v in net.mlm_head.state_dict().items()})
    return model


# BertForSequenceClassification pools with [CLS] through a tanh layer, which cannot express the platform's pooling;
# this file, written into the folder, pools as tasks.Classification does, then applies its linear head.
MODELING_FILE, POOLED_CLASSIFIER = "modeling_platform.py", "PooledBertForSequenceClassification"
MODELING_CODE = '''"""Written by `python -m platform export`: a BERT encoder pooled as the platform's tasks.Classification pools it
(config.pooling: "mean" over the real tokens, the "first" token, or the "last" real one; padding on the right),
then its linear head."""

import torch
from torch import nn
from transformers import BertModel, BertPreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


class PooledBertForSequenceClassification(BertPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.dropout = nn.Dropout(config.classifier_dropout or 0.0)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None, labels=None,
                **kwargs):
        outputs = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, position_ids=position_ids,
                            inputs_embeds=inputs_embeds, **kwargs)
        hidden = outputs.last_hidden_state
        mask = torch.ones(hidden.shape[:2], device=hidden.device) if attention_mask is None else attention_mask
        if self.config.pooling == "first":
            pooled = hidden[:, 0]
        elif self.config.pooling == "last":
            pooled = hidden[torch.arange(len(hidden), device=hidden.device), mask.sum(1).long() - 1]
        else:
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)
        logits = self.classifier(self.dropout(pooled))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions)
'''


def write_pooled_classifier(folder: str, net: HuggingFace, head: dict, pooling: str, dropout: float, classes: list[str]) -> None:
    """A BERT classifier's folder: its config, registered for AutoModelForSequenceClassification through auto_map
    (AutoModel loads the encoder alone), the weights and MODELING_FILE."""
    from safetensors.torch import save_file

    config = type(net.model.config).from_dict(net.model.config.to_dict())
    config.architectures = [POOLED_CLASSIFIER]
    config.auto_map = {"AutoModelForSequenceClassification": f"{MODELING_FILE.removesuffix('.py')}.{POOLED_CLASSIFIER}"}
    config.pooling, config.classifier_dropout = pooling, dropout
    config.id2label, config.label2id = dict(enumerate(classes)), {c: i for i, c in enumerate(classes)}
    config.save_pretrained(folder)
    state = {f"bert.{k}": v for k, v in net.model.state_dict().items()}
    state |= {"classifier.weight": head["1.weight"], "classifier.bias": head["1.bias"]}  # the platform's head: Sequential(Dropout, Linear)
    save_file({k: v.contiguous() for k, v in state.items()}, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(folder, MODELING_FILE), "w") as f:
        f.write(MODELING_CODE)


def pooled_classifier_class() -> type:
    """MODELING_CODE's class, for the export's own check: compiled from the source here, not through
    trust_remote_code, which would keep a copy for every temporary folder in Hugging Face's modules cache."""
    namespace = {}
    exec(compile(MODELING_CODE, MODELING_FILE, "exec"), namespace)
    return namespace[POOLED_CLASSIFIER]


def write_native(folder: str, source: Source) -> None:
    """The platform's network as it is: its config (class_path/init_args, what tasks.checkpoints.build takes) and its
    state_dict, a tensor under two names (tied embeddings) stored once: safetensors refuses shared tensors, and
    safetensors.torch.load_model restores the tie."""
    from safetensors.torch import save_model

    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"class_path": source.spec["class_path"], "init_args": source.spec.get("init_args", {})}, f, indent=2)
    save_model(source.network, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})


# -- choosing the architecture ------------------------------------------------------------------------------------


def no_match(source: Source) -> str | None:
    """What keeps every Hugging Face architecture from computing the source's network; None when one does."""
    net, task = source.network, f"tasks.{source.task.__name__}"
    if type(net) is GPT:
        args = gpt_args(source.spec)
        if not issubclass(source.task, CausalLM):
            return f"tasks.nets.GPT in {task} (a GPT exports as GPT-2 or Llama from tasks.CausalLM only)"
        off = [f"{k}={args[k]}" for k, plain in (("qk_norm", False), ("logit_softcap", None)) if args[k] != plain]
        if off:
            return f"tasks.nets.GPT with {', '.join(off)} (neither GPT-2 nor Llama has it)"
        recipe = args["positions"], args["norm"]
        if recipe == ("learned", "layernorm") and args["activation"] == "swiglu":
            return "tasks.nets.GPT with learned positions, LayerNorm and swiglu (GPT-2's MLP is not gated)"
        if recipe not in (("learned", "layernorm"), ("rotary", "rmsnorm")):
            return f"tasks.nets.GPT with positions={recipe[0]}, norm={recipe[1]} (GPT-2 is learned + layernorm, Llama rotary + rmsnorm)"
        return None
    if isinstance(net, HuggingFace):
        if issubclass(source.task, Classification) and net.model.config.model_type != "bert":
            return f"a {net.model.config.model_type} backbone in {task} (the pooled classifier exported is a BERT's)"
        return None
    return f"{source.spec['class_path']} in {task}"


def convert(source: Source, classes: list[str] | None) -> Conversion:
    """The source's network as a Hugging Face model; where none matches, a Conversion that writes the platform's own files."""
    net, tokenizer = source.network, source.tokenizer
    reason = no_match(source)
    if reason is not None:
        what = f"wrote the task's main network, {source.where}, as the platform's {source.spec['class_path']}"
        return Conversion(f"no Hugging Face architecture matches {reason}: {what}", write=lambda folder: write_native(folder, source))
    if type(net) is GPT:
        args = gpt_args(source.spec)
        # what generation starts, stops and pads with: the end-of-text token (GPT-2's convention) and the tokenizer's padding
        special_ids = (
            {"bos_token_id": tokenizer.eos_id, "eos_token_id": tokenizer.eos_id, "pad_token_id": tokenizer.pad_id} if tokenizer else {}
        )
        tied = "tied" if args["tie_embeddings"] else "untied"
        if args["positions"] == "learned":
            model, how = gpt2(net, args, special_ids), f"{args['activation']} MLP, {tied} head"
        else:
            model, how = llama(net, args, special_ids)
            how = f"{how}, {tied} head"
        return Conversion(f"{type(model).__name__} ({how})", "AutoModelForCausalLM", lambda ids, mask: net(ids), model=model)
    if net.mlm_head is not None:
        model = masked_lm(net)
        logits = lambda ids, mask: net.token_logits(net.features(ids, mask))  # noqa: E731
        return Conversion(type(model).__name__, "AutoModelForMaskedLM", logits, model=model, masked=True)
    if issubclass(source.task, Classification):
        pooling, dropout = source.task_args.get("pooling", "mean"), source.task_args.get("head_dropout", 0.0)
        head = nn.Linear(net.out_dim, len(classes))
        head.load_state_dict({"weight": source.head["1.weight"], "bias": source.head["1.bias"]})
        logits = lambda ids, mask: head(pool(net.features(ids, mask), mask, pooling))  # noqa: E731
        write = lambda folder: write_pooled_classifier(folder, net, source.head, pooling, dropout, classes)  # noqa: E731
        summary = f"{POOLED_CLASSIFIER} ({pooling} pooling as the platform's, {MODELING_FILE} in the folder: trust_remote_code=True)"
        return Conversion(summary, "AutoModelForSequenceClassification", logits, write=write, masked=True, remote_code=True)
    model = net.model  # the encoder the platform wraps
    pooler = "; its pooler, which the platform removed, loads untrained" if hasattr(model, "pooler") else ""
    return Conversion(f"{type(model).__name__} (hidden states{pooler})", "AutoModel", lambda ids, mask: net.features(ids, mask),
                      model=model, output="last_hidden_state", masked=True)  # fmt: skip


# -- the tokenizer ------------------------------------------------------------------------------------------------


def byte_chars() -> list[str]:
    """The printable character that byte-level BPEs (GPT-2's, tokenizers' ByteLevel) stand each byte in for, in byte order."""
    printable = {*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)}
    others = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(others)) for b in range(256)]


def hf_tokenizer(tokenizer, max_length: int | None):
    """The platform's tokenizer as a transformers tokenizer, its special tokens named (end of text, padding, BERT's).
    A BPE (GPT-2's, a trained one, a Hugging Face model's) already is a ``tokenizers.Tokenizer``; the bytes become a
    byte-level BPE without merges, each byte its own id (0-255), and the special tokens at their ids after them."""
    from tokenizers import AddedToken, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as HFTokenizer
    from transformers import PreTrainedTokenizerFast

    if isinstance(tokenizer, ByteTokenizer):
        backend = HFTokenizer(models.BPE(vocab={c: i for i, c in enumerate(byte_chars())}, merges=[]))
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        backend.decoder = decoders.ByteLevel()
        backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in sorted(tokenizer.ids, key=tokenizer.ids.get)])
    else:
        backend = HFTokenizer.from_str(tokenizer.tokenizer.to_str())  # a copy: the platform's stays as it is
    has = lambda token: token if backend.token_to_id(token) is not None else None  # noqa: E731
    named = {"eos_token": has(EOS), "bos_token": has(EOS), "unk_token": has(UNK), "cls_token": has(CLS), "sep_token": has(SEP),
             "mask_token": has(MASK), "pad_token": backend.id_to_token(tokenizer.pad_id) or has(PAD)}  # fmt: skip
    return PreTrainedTokenizerFast(tokenizer_object=backend, model_max_length=max_length, **{k: v for k, v in named.items() if v})


def write_tokenizer(folder: str, tokenizer, max_length: int | None) -> None:
    hf_tokenizer(tokenizer, max_length).save_pretrained(folder)
    path = os.path.join(folder, "tokenizer_config.json")
    with open(path) as f:
        config = json.load(f)
    config["tokenizer_class"] = "PreTrainedTokenizerFast"  # the name transformers 4 knows too (5 calls it TokenizersBackend)
    with open(path, "w") as f:
        json.dump(config, f, indent=2)


# -- writing and checking the folder ------------------------------------------------------------------------------


def write_folder(folder: str, source: Source, conversion: Conversion) -> None:
    if conversion.model is not None:
        if conversion.model.can_generate():  # a pipeline's default length would run past the context of learned positions
            conversion.model.generation_config.max_length = source.network.block_size
        conversion.model.save_pretrained(folder)  # a tied head stored once, as transformers expects
    else:
        conversion.write(folder)
    if source.tokenizer is not None:
        write_tokenizer(folder, source.tokenizer, source.network.block_size if conversion.loader else None)


def sample_inputs(source: Source, masked: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Two rows of random ids the tokenizer can produce; with ``masked``, the second padded on the right."""
    vocab = source.tokenizer.vocab_size if source.tokenizer is not None else source.network.vocab_size
    length = min(source.network.block_size or 64, 64)
    ids = torch.randint(0, vocab, (2, length), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids, dtype=torch.bool)
    if masked:
        mask[1, length // 2 :] = False
    return ids, mask


@torch.no_grad()
def check_folder(folder: str, source: Source, conversion: Conversion) -> str:
    """Load the folder back as a user would and compare its outputs, and its tokenizer's ids, with the platform's;
    returns what was checked. An export that does not compute what the platform does is refused in one line."""
    if conversion.loader is None:  # the platform's own files: the network rebuilt from them holds the same tensors
        from safetensors.torch import load_model

        with open(os.path.join(folder, "config.json")) as f:
            rebuilt = build(json.load(f))
        load_model(rebuilt, os.path.join(folder, "model.safetensors"))
        theirs, ours = rebuilt.state_dict(), source.network.state_dict()
        if theirs.keys() != ours.keys() or any(not torch.equal(theirs[k], ours[k]) for k in ours):
            raise ValueError(
                f"export {source.path}: the network rebuilt from the written files differs from the checkpoint's: nothing written"
            )
        check = "tensors equal to the checkpoint's"
    else:
        import transformers

        loader = pooled_classifier_class() if conversion.remote_code else getattr(transformers, conversion.loader)
        model = loader.from_pretrained(folder).eval()
        ids, mask = sample_inputs(source, conversion.masked)
        ours = conversion.platform(ids, mask if conversion.masked else None)
        theirs = getattr(model(input_ids=ids, attention_mask=mask.long() if conversion.masked else None), conversion.output)
        difference = (ours.float() - theirs.float()).abs().max().item()
        if not difference <= TOLERANCE:
            raise ValueError(f"export {source.path}: {type(model).__name__}'s {conversion.output} differ from the platform's by "
                             f"{difference:.2g}, more than {TOLERANCE}: nothing written")  # fmt: skip
        check = f"{conversion.output} within {difference:.1e} of the platform's"
    if source.tokenizer is not None:
        from transformers import AutoTokenizer

        theirs, ours = AutoTokenizer.from_pretrained(folder)(SAMPLE_TEXT)["input_ids"], source.tokenizer.encode_batch([SAMPLE_TEXT])[0]
        if theirs != ours:
            raise ValueError(
                f"export {source.path}: the exported tokenizer's ids for {SAMPLE_TEXT!r} are not the platform's: nothing written"
            )
    return check


def make_readable(folder: str) -> None:
    """The permissions mkdir and open would have given (mkdtemp, and some writers, keep a folder or file to its owner)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
    for name in os.listdir(folder):
        os.chmod(os.path.join(folder, name), 0o666 & ~umask)


def file_kind(name: str) -> str:
    if name.endswith(".safetensors"):
        return "weights"
    if name.endswith(".py"):
        return "code"
    return "tokenizer" if name.startswith(("tokenizer", "special_tokens", "vocab", "merges")) else "config"


def file_groups(folder: str) -> dict[str, list[str]]:
    """The written files by what they are, a line of export's report each."""
    groups = {"weights": [], "config": [], "code": [], "tokenizer": []}
    for name in sorted(os.listdir(folder)):
        groups[file_kind(name)].append(os.path.join(folder, name))
    return {kind: paths for kind, paths in groups.items() if paths}


def export(ckpt_path: str, to: str) -> list[str]:
    """Write the network of the checkpoint ``ckpt_path`` into the new folder ``to``; returns the lines that say what was written."""
    if os.path.lexists(to):
        raise ValueError(f"export --to {to}: already exists, and export never writes over a path: expected a new directory")
    import transformers

    transformers.logging.set_verbosity_error()  # a BertModel loads without the pooler the platform removed: no warning about it
    transformers.logging.disable_progress_bar()
    source = read_source(ckpt_path)
    classes, named_by = class_names(ckpt_path, len(source.head["1.bias"])) if source.head else (None, None)
    conversion = convert(source, classes)
    parent, name = os.path.split(os.path.abspath(to))
    try:  # beside the target: the rename into place stays on one file system
        os.makedirs(parent, exist_ok=True)
        partial = tempfile.mkdtemp(prefix=f".{name}-partial-", dir=parent)
    except OSError as err:
        raise ValueError(
            f"export --to {to}: cannot write there ({err.strerror}): expected a new path in a directory this user can write"
        ) from err
    try:
        write_folder(partial, source, conversion)
        check = check_folder(partial, source, conversion)
        make_readable(partial)
        os.rename(partial, to)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    step = f" (step {source.step})" if source.step is not None else ""
    lines = [f"exported {ckpt_path}{step} to {to}", f"  architecture: {conversion.summary}; {check}"]
    lines += [f"  {kind + ':':<13} {', '.join(paths)}" for kind, paths in file_groups(to).items()]
    if classes:
        lines.append(f"  labels:       {', '.join(classes)} ({named_by})")
    if source.tokenizer is None:
        lines.append("  tokenizer:    none (the run's data saved none)")
    if conversion.loader:
        remote = ", trust_remote_code=True" if conversion.remote_code else ""
        lines.append(f"  load with:    transformers.{conversion.loader}.from_pretrained({to!r}{remote})")
    else:
        weights = os.path.join(to, "model.safetensors")
        lines.append(
            f"  load with:    network = tasks.checkpoints.build(<config.json>); safetensors.torch.load_model(network, {weights!r})"
        )
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m platform export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_checkpoint_arguments(parser)
    parser.add_argument("--to", required=True, help="the folder to write: a new path (export never writes over one)")
    args = parser.parse_args(argv)
    ckpt_path = find_checkpoint(args, "export")
    print("\n".join(export(ckpt_path, args.to)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
