"""``python -m platform export``: every architecture that Hugging Face has loads with ``from_pretrained`` and computes
the platform's outputs (within 1e-4, fp32), its tokenizer the platform's ids; the rest is written as the platform's
own files, which load back into the same network; bad input is one line and exit status 2."""

import contextlib
import io
import json
import os
from functools import partial

import pytest
import torch

from core.batches import TextBatch
from datamodules.tokenizers import load_tokenizer
from litlab.cli import main
from tasks import CausalLM, Classification, Contrastive, MaskedLM, Reconstruction
from tasks.checkpoints import build, load_task
from tests.helpers import fit
from tests.shrink import TINY_BERT, shrunk_config

SENTENCE = "The government said the 2025 budget would rise by 4% — “quickly”, in Zürich."
STEPS = ["--trainer.max_steps", "2", "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1", "--trainer.logger", "false"]
FITS = {  # the configs fitted, shrunk (tests/shrink.py), and what else they take
    "gpt_nano": [],  # GPT-2's recipe: learned positions, LayerNorm, GELU, tied; bytes
    # the main job's recipe: rotary, RMSNorm, ReLU², tied; a BPE trained on a small vocabulary
    "gpt_small": ["--data.init_args.corpus", "kjv", "--data.init_args.bpe_vocab_size", "300"],
    "classify_bbc_minilm": [],  # MiniLM fine-tuned on BBC topics (a tiny BERT of its vocabulary), mean pooling
}
SMALL_GPT = {"vocab_size": 261, "block_size": 32, "n_layer": 2, "n_head": 2, "n_embd": 32}


def gpt(**kwargs) -> dict:
    return {"class_path": "tasks.nets.GPT", "init_args": {**SMALL_GPT, **kwargs}}


def tiny_bert(**kwargs) -> dict:
    return {"class_path": "tasks.nets.HuggingFace", "init_args": {"model": "minilm", "pretrained": False, "config": TINY_BERT, **kwargs}}


ROTARY = {"positions": "rotary", "norm": "rmsnorm"}
IMAGES = {
    "encoder": {"class_path": "tasks.nets.ConvEncoder", "init_args": {"in_channels": 1, "image_size": 8, "width": 4, "out_dim": 8}},
    "decoder": {"class_path": "tasks.nets.ConvDecoder", "init_args": {"out_channels": 1, "image_size": 8, "width": 4, "in_dim": 16}},
}
MADE = {  # checkpoints built here: the task, its networks' configs, the tokenizer
    "gpt2_untied_bias": (CausalLM, {"net": gpt(vocab_size=50304, bias=True, tie_embeddings=False)}, "gpt2"),  # its vocabulary padded
    "gpt2_relu2": (CausalLM, {"net": gpt(activation="relu2")}, "bytes"),
    "llama_swiglu_bias": (CausalLM, {"net": gpt(**ROTARY, activation="swiglu", bias=True, tie_embeddings=False)}, "bytes"),
    "llama_gelu_bias": (CausalLM, {"net": gpt(**ROTARY, activation="gelu", bias=True)}, "bytes"),
    "bert_mlm": (MaskedLM, {"net": tiny_bert(mlm_head=True)}, "minilm"),
    "bert_encoder": (Contrastive, {"encoder": tiny_bert()}, "minilm"),
    "gpt_bidirectional": (MaskedLM, {"net": gpt(causal=False)}, "bytes"),
    "gpt_qk_norm": (CausalLM, {"net": gpt(qk_norm=True, logit_softcap=30.0)}, "bytes"),
    "bert_classifier_last": (partial(Classification, num_classes=3, pooling="last"), {"backbone": tiny_bert()}, "minilm"),
    "gpt_classifier": (partial(Classification, num_classes=3), {"backbone": gpt()}, "bytes"),
    "autoencoder": (Reconstruction, IMAGES, None),
}
MATCHES = {  # name: the Hugging Face class the export is, the Auto class that loads it
    "gpt_nano": ("GPT2LMHeadModel", "AutoModelForCausalLM"),
    "gpt2_untied_bias": ("GPT2LMHeadModel", "AutoModelForCausalLM"),
    "gpt2_relu2": ("GPT2LMHeadModel", "AutoModelForCausalLM"),
    "gpt_small": ("LlamaForCausalLM", "AutoModelForCausalLM"),
    "llama_swiglu_bias": ("LlamaForCausalLM", "AutoModelForCausalLM"),
    "llama_gelu_bias": ("LlamaForCausalLM", "AutoModelForCausalLM"),
    "bert_mlm": ("BertForMaskedLM", "AutoModelForMaskedLM"),
    "bert_encoder": ("BertModel", "AutoModel"),
    "classify_bbc_minilm": ("PooledBertForSequenceClassification", "AutoModelForSequenceClassification"),
    "bert_classifier_last": ("PooledBertForSequenceClassification", "AutoModelForSequenceClassification"),
}
NO_MATCH = {  # name: what the one line must name
    "gpt_bidirectional": "tasks.nets.GPT in tasks.MaskedLM",
    "gpt_qk_norm": "tasks.nets.GPT with qk_norm=True, logit_softcap=30.0",
    "gpt_classifier": "tasks.nets.GPT in tasks.Classification",
    "autoencoder": "tasks.nets.ConvEncoder in tasks.Reconstruction",
}


def export(*args: str) -> tuple[int, str, str]:
    """``python -m platform export *args`` through the real CLI: its exit status, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit_info:
        main(["export", *args])
    return exit_info.value.code, out.getvalue(), err.getvalue()


def save_checkpoint(path: str, make_task, networks: dict, tokenizer: str | None) -> str:
    """A checkpoint as a fit writes it, of a task built here, its weights moved off their initialization (zero
    biases and heads, unit norms) so that every tensor's mapping shows in the outputs."""
    task = make_task(**{name: build(spec) for name, spec in networks.items()})
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in task.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    checkpoint = {"state_dict": task.state_dict(), "hyper_parameters": {**task.hparams, **networks}, "global_step": 0}
    if tokenizer:
        checkpoint["TextDataModule"] = {"tokenizer": load_tokenizer(tokenizer).to_str()}
    task.on_save_checkpoint(checkpoint)  # the platform's record
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, token_cache) -> dict[str, str]:
    configs, runs, made = (str(tmp_path_factory.mktemp(d)) for d in ("configs", "runs", "made"))
    paths = {}
    for name, extra in FITS.items():
        config, _ = shrunk_config(name, configs, runs, token_cache)
        fit("--config", config, "--run.dir", runs, *STEPS, *extra)
        paths[name] = os.path.join(runs, name, "checkpoints", "last.ckpt")
    for name, (task, networks, tokenizer) in MADE.items():
        paths[name] = save_checkpoint(os.path.join(made, f"{name}.ckpt"), task, networks, tokenizer)
    return paths


@pytest.fixture(scope="module")
def exported(checkpoints, tmp_path_factory) -> dict[str, tuple[str, str]]:
    """name -> (the exported folder, what export printed); gpt_nano by --ckpt_path last --name, the fits by run directory."""
    out, done = str(tmp_path_factory.mktemp("exports")), {}
    for name, path in checkpoints.items():
        folder = os.path.join(out, name)
        if name == "gpt_nano":
            where = ["--ckpt_path", "last", "--name", name, "--run_dir", os.path.dirname(os.path.dirname(os.path.dirname(path)))]
        else:
            where = ["--ckpt_path", os.path.dirname(os.path.dirname(path)) if name in FITS else path]
        code, printed, err = export(*where, "--to", folder)
        assert code == 0, err
        done[name] = folder, printed
    return done


def inputs(vocab_size: int, padded: bool) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(0, vocab_size, (2, 12), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids, dtype=torch.bool)
    if padded:
        mask[1, 7:] = False
    return ids, mask


@torch.no_grad()
def platform_outputs(task, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """What the platform computes, by the task's own code: a language model's logits, a classifier's, an encoder's hidden states."""
    if isinstance(task, CausalLM):
        return task.net(ids)
    if isinstance(task, MaskedLM):
        return task.net.token_logits(task.net.features(ids, mask))
    if isinstance(task, Classification):
        return task.head(task.features(TextBatch(input_ids=ids, mask=mask, labels=torch.zeros(len(ids), dtype=torch.long))))
    return task.encoder.features(ids, mask)


@pytest.mark.parametrize("name", MATCHES)
@torch.no_grad()
def test_hugging_face_model_computes_the_platforms_outputs(exported, checkpoints, name):
    import transformers

    folder, printed = exported[name]
    hf_class, auto_class = MATCHES[name]
    assert f"architecture: {hf_class}" in printed and f"transformers.{auto_class}.from_pretrained" in printed
    remote_code = hf_class == "PooledBertForSequenceClassification"
    model = getattr(transformers, auto_class).from_pretrained(folder, trust_remote_code=remote_code).eval()
    assert type(model).__name__ == hf_class
    task = load_task(checkpoints[name]).eval()
    ids, mask = inputs(load_tokenizer(checkpoints[name]).vocab_size, padded=not isinstance(task, CausalLM))
    output = model(input_ids=ids, attention_mask=mask.long())
    theirs = output.logits if hf_class != "BertModel" else output.last_hidden_state
    assert (theirs - platform_outputs(task, ids, mask)).abs().max().item() < 1e-4
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    assert tokenizer(SENTENCE)["input_ids"] == load_tokenizer(checkpoints[name]).encode_batch([SENTENCE])[0]


def test_gpt2_tied_head_is_stored_once_and_generation_stops_at_the_context(exported):
    import transformers

    folder = exported["gpt_nano"][0]
    model = transformers.AutoModelForCausalLM.from_pretrained(folder)
    assert model.lm_head.weight is model.transformer.wte.weight
    assert model.config.activation_function == "gelu" and model.generation_config.max_length == model.config.n_positions == 64
    untied = transformers.AutoModelForCausalLM.from_pretrained(exported["gpt2_untied_bias"][0])
    assert untied.lm_head.weight is not untied.transformer.wte.weight
    assert not torch.equal(untied.lm_head.weight, untied.transformer.wte.weight)


def test_a_text_generation_pipeline_runs_an_exported_gpt(exported):
    """The README's snippet."""
    from transformers import pipeline

    folder = exported["gpt_nano"][0]
    generator = pipeline("text-generation", model=folder)
    text = generator("In the beginning", max_new_tokens=8, do_sample=False)[0]["generated_text"]
    assert text.startswith("In the beginning") and len(text) > len("In the beginning")


def test_classifier_names_its_labels_and_pools_as_the_platform(exported):
    import transformers

    folder, printed = exported["classify_bbc_minilm"]
    config = transformers.AutoConfig.from_pretrained(folder, trust_remote_code=True)
    assert config.id2label == dict(enumerate(["business", "entertainment", "politics", "sports", "tech"])) and config.pooling == "mean"
    assert "labels:       business, entertainment, politics, sports, tech" in printed
    assert set(os.listdir(folder)) == {
        "config.json",
        "model.safetensors",
        "modeling_platform.py",
        "tokenizer.json",
        "tokenizer_config.json",
    }
    assert type(transformers.AutoModel.from_pretrained(folder)).__name__ == "BertModel"  # the encoder alone, without the remote code
    outside_a_run = transformers.AutoConfig.from_pretrained(exported["bert_classifier_last"][0], trust_remote_code=True)
    assert outside_a_run.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"} and outside_a_run.pooling == "last"


@pytest.mark.parametrize("name", NO_MATCH)
def test_no_match_writes_the_platforms_network_which_loads_back(exported, checkpoints, name):
    from safetensors.torch import load_model

    folder, printed = exported[name]
    [line] = [line for line in printed.splitlines() if "no Hugging Face architecture matches" in line]
    assert NO_MATCH[name] in line
    files = {"config.json", "model.safetensors"} | ({"tokenizer.json", "tokenizer_config.json"} if MADE[name][2] else set())
    assert set(os.listdir(folder)) == files
    with open(os.path.join(folder, "config.json")) as f:
        spec = json.load(f)
    networks = MADE[name][1]
    main = next(iter(networks))  # the task's main network is its first
    assert spec == networks[main]
    rebuilt = build(spec).eval()
    load_model(rebuilt, os.path.join(folder, "model.safetensors"))  # a tied head was stored once: load_model restores it
    original = getattr(load_task(checkpoints[name]), main).eval()
    x = torch.randn(2, 1, 8, 8) if name == "autoencoder" else torch.randint(0, 261, (2, 12))
    with torch.no_grad():
        assert torch.equal(rebuilt(x), original(x))


@pytest.mark.parametrize("case", ["no run", "last without a name", "target exists", "not a platform checkpoint", "not a checkpoint"])
def test_bad_input_is_one_line_and_exit_2(tmp_path, checkpoints, case):
    target, existing = str(tmp_path / "out"), tmp_path / "taken"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    foreign = str(tmp_path / "foreign.ckpt")
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    (tmp_path / "text.ckpt").write_text("not a checkpoint")
    args, expected = {
        "no run": (["--ckpt_path", str(tmp_path / "runs" / "missing"), "--to", target], "no such file"),
        "last without a name": (["--ckpt_path", "last", "--to", target], "of which run? expected --name"),
        "target exists": (["--ckpt_path", checkpoints["gpt2_relu2"], "--to", str(existing)], "already exists"),
        "not a platform checkpoint": (["--ckpt_path", foreign, "--to", target], "not a checkpoint of this platform"),
        "not a checkpoint": (["--ckpt_path", str(tmp_path / "text.ckpt"), "--to", target], "not a checkpoint"),
    }[case]
    code, printed, err = export(*args)
    assert code == 2 and printed == ""
    [line] = err.strip().splitlines()
    assert line.startswith("error: ") and expected in line
    assert not os.path.exists(target) and os.listdir(existing) == ["keep.txt"] and (existing / "keep.txt").read_text() == "mine"


def test_a_failed_export_leaves_nothing(tmp_path, checkpoints, monkeypatch):
    monkeypatch.setattr("litlab.export.TOLERANCE", -1.0)  # no difference passes the check: the export must be refused
    code, _, err = export("--ckpt_path", checkpoints["gpt2_relu2"], "--to", str(tmp_path / "out"))
    assert code == 2 and "nothing written" in err
    assert os.listdir(tmp_path) == []
