"""``test`` and ``predict`` through the real CLI, on tiny runs of the shipped configs: test scores the test split and
prints its ``test/...`` metrics (a classifier's confusion matrix saved as a PNG whose pixels are that matrix), and
predict writes a file per run whose rows and arrays are the test split's inputs with the model's own outputs."""

import csv
import json
import os
import re

import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import Logger
from PIL import Image

from datamodules import ImageDataModule, LabeledTextDataModule, TextDataModule
from tasks import CausalLM
from tasks.checkpoints import load_network, load_task
from tasks.images import confusion_figure, figure_image, image_grid, to_uint8
from tasks.rng import seeded
from tests.helpers import command, error_line, fit
from tests.shrink import shrunk_config

FEW = ["--trainer.max_steps", "2", "--trainer.limit_val_batches", "1", "--trainer.logger", "false"]
BBC_CLASSES = ["business", "entertainment", "politics", "sports", "tech"]


def test_metrics(printed: str) -> dict[str, float]:
    """The ``test/...`` metrics of the table that ``test`` prints."""
    return {name: float(value) for name, value in re.findall(r"(test/\w+)\W+(-?[\d.]+(?:e[-+]?\d+)?|nan)", printed)}


test_metrics.__test__ = False  # a helper, not a test


@pytest.fixture(scope="module")
def trained(tmp_path_factory, token_cache):
    """``trained(name, *overrides)``: configs/<name>.yaml shrunk (tests/shrink.py), fitted for 2 steps once per module
    (after the runs whose checkpoints it starts from); its config, checkpoint and run directory."""
    configs, runs, done = tmp_path_factory.mktemp("configs"), str(tmp_path_factory.mktemp("runs")), {}

    def make(name: str, *overrides: str) -> tuple[str, str, str]:
        if name not in done:
            config, needs = shrunk_config(name, str(configs), runs, token_cache)
            for needed in sorted(needs):
                make(needed)
            fit("--config", config, *FEW, *overrides, "--run.dir", runs)
            done[name] = (config, os.path.join(runs, name, "checkpoints", "last.ckpt"), os.path.join(runs, name))
        return done[name]

    return make


class ImageLogger(Logger):
    """A logger with W&B's ``log_image`` that keeps what it is given (``LOGGED``: key -> images)."""

    LOGGED: dict[str, list[np.ndarray]] = {}

    name, version = "images", 0

    def log_metrics(self, metrics, step=None) -> None:
        pass

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_image(self, key: str, images: list, step: int | None = None) -> None:
        self.LOGGED[key] = images


def read_csv(path: str) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# -- classifiers -----------------------------------------------------------------------------------


def test_a_text_classifier_tests_on_the_test_split_and_draws_its_confusion_matrix(trained):
    config, ckpt, run = trained("classify_bbc_student")
    printed = command("test", "--config", config, "--ckpt_path", ckpt)
    metrics = test_metrics(printed)
    assert {"test/loss", "test/acc", "test/f1", "test/precision", "test/recall"} <= set(metrics), printed
    png = os.path.join(run, "confusion_matrix.png")
    assert f"Confusion matrix: {png}" in printed
    command("test", "--config", config, "--ckpt_path", ckpt, "--trainer.logger", f"{__name__}.ImageLogger")
    assert os.path.isfile(os.path.join(run, "confusion_matrix-2.png")) and os.path.isfile(png)  # the first is kept
    (logged,) = ImageLogger.LOGGED["test/confusion_matrix"]  # and a logger that takes images has it too
    assert np.array_equal(logged, np.asarray(Image.open(png).convert("RGB")))

    command("predict", "--config", config, "--ckpt_path", ckpt)
    rows = read_csv(os.path.join(run, "predictions.csv"))
    data = LabeledTextDataModule(tokenizer="bytes")  # the config's split: val 0.1 + test 0.1 of each topic, seed 0
    test_split = data.parts["test"]
    assert list(rows[0]) == ["index", "text", "label", "predicted", *(f"p_{c}" for c in BBC_CLASSES)]
    assert [int(r["index"]) for r in rows] == test_split.tolist() and len(rows) == 222
    assert [r["text"] for r in rows] == [data.texts[i] for i in test_split]  # the input, as the dataset has it
    assert [r["label"] for r in rows] == [data.classes[data.labels[i]] for i in test_split]
    for row in rows:
        p = np.array([float(row[f"p_{c}"]) for c in BBC_CLASSES])
        assert abs(p.sum() - 1) < 1e-5 and row["predicted"] == BBC_CLASSES[int(p.argmax())]

    # the PNG is the confusion matrix of those predictions, drawn: row = true class, column = predicted
    counts = torch.zeros(5, 5, dtype=torch.long)
    for row in rows:
        counts[BBC_CLASSES.index(row["label"]), BBC_CLASSES.index(row["predicted"])] += 1
    assert abs(metrics["test/acc"] - counts.diag().sum().item() / len(rows)) < 1e-6
    expected = to_uint8(figure_image(confusion_figure(counts, BBC_CLASSES))).permute(1, 2, 0).numpy()
    pixels = np.asarray(Image.open(png).convert("RGB"))
    assert pixels.shape == expected.shape == (385, 385, 3)  # 3.85 inches at 100 dpi for 5 classes
    assert np.array_equal(pixels, expected)


def dark_cells(matrix: torch.Tensor, classes: list[str]) -> list[tuple[float, float, int]]:
    """``(row, column, pixels)`` of the dark-blue regions of a drawn confusion matrix (4-connected), but the specks
    that a white count's digit encloses (the inside of a 9)."""
    from scipy import ndimage

    pixels = (figure_image(confusion_figure(matrix, classes)) * 255).permute(1, 2, 0).numpy()
    dark = (pixels[..., 0] < 60) & (pixels[..., 2] > 90)  # "Blues" above ~0.8 of a row: (8, 48, 107) at 1
    labelled, n = ndimage.label(dark)
    regions = [(*ndimage.center_of_mass(dark, labelled, k), int((labelled == k).sum())) for k in range(1, n + 1)]
    return [region for region in regions if region[2] > 100]


def test_the_confusion_matrix_shows_right_and_wrong_predictions_with_the_class_names():
    classes = ["cat", "dog", "fish", "bird"]
    perfect = dark_cells(torch.diag(torch.tensor([5, 9, 3, 7])), classes)  # one dark cell per class, down the diagonal
    assert len(perfect) == 4
    rows, columns = [r for r, _, _ in perfect], [c for _, c, _ in perfect]
    assert rows == sorted(rows) and columns == sorted(columns) and min(np.diff(rows)) > 20 and min(np.diff(columns)) > 20
    all_cats = torch.zeros(4, 4, dtype=torch.long)
    all_cats[:, 0] = torch.tensor([5, 9, 3, 7])  # everything predicted "cat": the first column dark, top to bottom
    (column,) = dark_cells(all_cats, classes)
    assert abs(column[1] - columns[0]) < 2 and abs(column[0] - np.mean(rows)) < 2 and column[2] > 3 * perfect[0][2]
    axes = confusion_figure(all_cats, classes).axes[0]
    assert [t.get_text() for t in axes.get_xticklabels()] == [t.get_text() for t in axes.get_yticklabels()] == classes
    assert (axes.get_xlabel(), axes.get_ylabel()) == ("predicted", "true")


def test_an_image_classifier_predicts_with_its_images_paths(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shapes")
    rng = np.random.default_rng(0)
    for k, name in enumerate(["circle", "square", "triangle"]):
        os.makedirs(folder / name)
        for i in range(12):
            Image.fromarray((rng.random((8, 8)) * 80 + 60 * k).astype(np.uint8)).save(folder / name / f"{i:02d}.png")
    runs = str(tmp_path_factory.mktemp("runs"))
    args = ["--config", "configs/classify_mnist_simclr.yaml", "--model.init_args.backbone_ckpt", "null", "--data.init_args.source", str(folder),
            "--data.init_args.labels_per_class", "4", "--data.init_args.batch_size", "4", "--run.dir", runs]  # fmt: skip
    fit(*args, *FEW)
    command("predict", *args, "--ckpt_path", os.path.join(runs, "classify_mnist_simclr", "checkpoints", "last.ckpt"))
    rows = read_csv(os.path.join(runs, "classify_mnist_simclr", "predictions.csv"))
    data = ImageDataModule(str(folder))
    data.setup("predict")
    assert list(rows[0]) == ["index", "path", "label", "predicted", "p_circle", "p_square", "p_triangle"]
    assert [int(r["index"]) for r in rows] == data.splits["test"].source_index.tolist() and len(rows) == 4
    for row in rows:  # the path is the image's own file, in its class's folder
        assert row["path"] == data.paths[int(row["index"])] and os.path.basename(os.path.dirname(row["path"])) == row["label"]
        assert abs(sum(float(row[f"p_{c}"]) for c in ("circle", "square", "triangle")) - 1) < 1e-5


def test_a_distilled_student_tests_and_predicts_as_a_classifier(trained):
    config, ckpt, run = trained("distill_bbc_minilm")
    printed = command("test", "--config", config, "--ckpt_path", ckpt, "--trainer.limit_test_batches", "3")
    assert {"test/loss", "test/acc", "test/f1", "test/precision", "test/recall"} <= set(test_metrics(printed))
    assert f"Confusion matrix: {os.path.join(run, 'confusion_matrix.png')}" in printed
    command("predict", "--config", config, "--ckpt_path", ckpt, "--trainer.limit_predict_batches", "1")
    rows = read_csv(os.path.join(run, "predictions.csv"))
    assert list(rows[0]) == ["index", "text", "label", "predicted", *(f"p_{c}" for c in BBC_CLASSES)] and len(rows) == 4


def test_test_refuses_a_checkpoint_of_another_task_and_a_missing_test_split(cli, capsys, trained):
    config, ckpt, _ = trained("classify_bbc_student")
    _, lm_ckpt, _ = trained("gpt_nano")
    line = error_line(cli, capsys, "test", "--config", config, "--ckpt_path", lm_ckpt)
    assert f"--ckpt_path {lm_ckpt}: a checkpoint of tasks.CausalLM, expected one of the configured tasks.Classification" in line
    for subcommand in ("test", "predict"):
        line = error_line(cli, capsys, subcommand, "--config", config, "--ckpt_path", ckpt, "--data.init_args.test_fraction", "0")
        assert line.startswith(f"error: {subcommand}: data.test_fraction=0 holds out no test split: expected a test_fraction in (0, 1)")


# -- language models -------------------------------------------------------------------------------


def test_a_pretrained_lm_tests_and_continues_its_test_windows(trained, token_cache):
    config, ckpt, run = trained("gpt_nano")
    metrics = test_metrics(command("test", "--config", config, "--ckpt_path", ckpt, "--trainer.limit_test_batches", "3"))
    assert set(metrics) == {"test/loss", "test/ppl"} and metrics["test/ppl"] == pytest.approx(np.exp(metrics["test/loss"]), rel=1e-4)

    command("predict", "--config", config, "--ckpt_path", ckpt, "--trainer.limit_predict_batches", "2")
    rows = [json.loads(line) for line in open(os.path.join(run, "predictions.jsonl"))]
    data = TextDataModule(corpus="kjv", tokenizer="bytes", block_size=64, cache_dir=token_cache)  # gpt_nano's data
    data.prepare_data()
    data.setup("predict")
    tokens = np.fromfile(data.test_set.path, dtype=np.uint32).tolist()
    assert [r["index"] for r in rows] == list(range(8))  # 2 batches of 4 windows
    for row in rows:  # a window's first half is the prompt, the rest of its 65 tokens the reference
        start = row["index"] * 64
        assert row["prompt"] == data.tokenizer.decode(tokens[start : start + 32])
        assert row["reference"] == data.tokenizer.decode(tokens[start + 32 : start + 65])
        assert isinstance(row["generated"], str) and len(row["generated"].encode()) <= 3 * 33


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory) -> tuple[str, list[dict]]:
    records = [{"prompt": f"Question {i}: what is {i} times {i % 7}?", "response": f" {i * (i % 7)}, surely"} for i in range(60)]
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path), records


def sft_args(pairs: str) -> list[str]:
    """configs/gpt_sft.yaml, tiny, from scratch, on ``pairs`` in bytes."""
    net = "--model.init_args.net.init_args."
    return ["--config", "configs/gpt_sft.yaml", "--model.init_args.init_ckpt", "null", "--data.init_args.files", pairs,
            "--data.init_args.tokenizer", "bytes", "--data.init_args.block_size", "64", "--data.init_args.batch_size", "4",
            "--model.init_args.sample_tokens", "0", "--model.init_args.response_tokens", "12",
            net + "n_layer", "1", net + "n_head", "2", net + "n_embd", "32"]  # fmt: skip


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory, pairs_file) -> tuple[str, str]:
    """A tiny gpt_sft run on ``pairs_file``: its runs directory and checkpoint."""
    runs = str(tmp_path_factory.mktemp("runs"))
    fit(*sft_args(pairs_file[0]), *FEW, "--run.dir", runs)
    return runs, os.path.join(runs, "gpt_sft", "checkpoints", "last.ckpt")


def test_fine_tuned_responses_are_scored_with_rouge_and_written_beside_the_real_ones(fine_tuned, pairs_file):
    (pairs, records), (runs, ckpt) = pairs_file, fine_tuned
    metrics = test_metrics(command("test", *sft_args(pairs), "--ckpt_path", ckpt, "--run.dir", runs))
    assert set(metrics) == {"test/loss", "test/ppl", "test/rougeL"} and 0 <= metrics["test/rougeL"] <= 1

    command("predict", *sft_args(pairs), "--ckpt_path", ckpt, "--run.dir", runs)
    rows = [json.loads(line) for line in open(os.path.join(runs, "gpt_sft", "predictions.jsonl"))]
    order = np.random.default_rng(0).permutation(60)  # 0.05 + 0.05 of 60 records held out: 3 val, 3 test
    assert sorted(r["index"] for r in rows) == sorted(order[3:6].tolist())
    for row in rows:
        assert (row["prompt"], row["reference"]) == (records[row["index"]]["prompt"], records[row["index"]]["response"])
        assert len(row["generated"].encode()) <= 12  # response_tokens bytes at most, the end-of-text cut off


def test_rouge_compares_the_generated_responses_with_the_real_ones(fine_tuned, pairs_file, monkeypatch):
    """A model that answers each test prompt with its real response scores ROUGE-L 1; one that answers another's, less."""
    (pairs, records), (runs, ckpt) = pairs_file, fine_tuned
    answers = {r["prompt"]: r["response"] for r in records}

    def answering(shift: int):
        def complete(self, prompts, max_new_tokens, stop_at=None):
            texts = [self.data.tokenizer.decode(ids.tolist()) for ids in prompts]
            return [answers[list(answers)[(list(answers).index(t) + shift) % len(answers)]] for t in texts]

        return complete

    monkeypatch.setattr(CausalLM, "complete", answering(0))
    assert test_metrics(command("test", *sft_args(pairs), "--ckpt_path", ckpt, "--run.dir", runs))["test/rougeL"] == pytest.approx(1.0)
    monkeypatch.setattr(CausalLM, "complete", answering(1))  # "12, surely" for "6, surely": "surely" alone in common
    assert test_metrics(command("test", *sft_args(pairs), "--ckpt_path", ckpt, "--run.dir", runs))["test/rougeL"] < 0.8


def test_a_masked_lm_tests_as_it_validates(trained):
    config, ckpt, _ = trained("bert_small", "--data.init_args.tokenizer", "bytes")
    printed = command("test", "--config", config, "--ckpt_path", ckpt, "--data.init_args.tokenizer", "bytes", "--trainer.limit_test_batches", "2")
    metrics = test_metrics(printed)
    assert set(metrics) == {"test/loss", "test/ppl", "test/mlm_acc"} and 0 <= metrics["test/mlm_acc"] <= 1


# -- image models ----------------------------------------------------------------------------------

DIGITS = ["--data.init_args.source", "digits"]


def test_an_autoencoder_tests_and_writes_the_latents_of_the_test_images(trained):
    config, ckpt, run = trained("autoencoder", *DIGITS)
    metrics = test_metrics(command("test", "--config", config, "--ckpt_path", ckpt, *DIGITS))
    assert set(metrics) == {"test/loss", "test/mse", "test/psnr"} and metrics["test/psnr"] == pytest.approx(-10 * np.log10(metrics["test/mse"]), rel=1e-4)

    command("predict", "--config", config, "--ckpt_path", ckpt, *DIGITS)
    saved = np.load(os.path.join(run, "latents.npz"))
    data = ImageDataModule("digits")
    data.setup("predict")
    test_split = data.splits["test"]
    assert sorted(saved.files) == ["index", "label", "latent"] and saved["latent"].shape == (180, 32) and saved["latent"].dtype == np.float32
    assert np.array_equal(saved["index"], test_split.source_index.numpy()) and np.array_equal(saved["label"], test_split.labels.numpy())
    model = load_task(ckpt).eval()
    with torch.no_grad():
        latent, _ = model.encode(data.images[saved["index"]])
    np.testing.assert_allclose(saved["latent"], latent.numpy(), atol=1e-5)  # the model's encoding of those very images


def test_a_gan_tests_its_fid_and_writes_samples(trained):
    config, ckpt, run = trained("gan", *DIGITS)
    metrics = test_metrics(command("test", "--config", config, "--ckpt_path", ckpt, *DIGITS))
    assert set(metrics) == {"test/fid"} and metrics["test/fid"] > 0

    printed = command("predict", "--config", config, "--ckpt_path", ckpt, *DIGITS)
    npz, png = os.path.join(run, "samples.npz"), os.path.join(run, "samples.png")
    assert f"Predictions: {npz}\nPredictions: {png}" in printed
    saved = np.load(npz)
    images = saved["images"]
    assert images.shape == (180, 1, 8, 8) and images.min() >= 0 and images.max() <= 1  # one per test image
    batch = 4  # the shrunk config's
    assert saved["seed"][:batch].tolist() == [0] * batch and saved["seed"][batch] == 1
    generator = load_network(ckpt).eval()
    with seeded(0), torch.no_grad():  # the first batch: GAN.sample(4, seed=0), from the checkpoint's generator
        first = generator(torch.randn(batch, 64))
    np.testing.assert_allclose(images[:batch], ((first + 1) / 2).numpy(), atol=1e-6)
    grid = image_grid(list(torch.from_numpy(images[:64] * 2 - 1).split(8)))  # the first 64, 8 a row
    pixels = np.asarray(Image.open(png))
    assert pixels.shape == (8 * 9 + 1, 8 * 9 + 1) and np.array_equal(pixels, to_uint8(grid)[0].numpy())


def test_a_contrastive_encoder_tests_with_its_probes_and_writes_embeddings(trained):
    config, ckpt, run = trained("simclr")
    metrics = test_metrics(command("test", "--config", config, "--ckpt_path", ckpt, "--trainer.limit_test_batches", "2"))
    assert set(metrics) == {"test/loss", "test/probe_acc", "test/knn_acc"}

    command("predict", "--config", config, "--ckpt_path", ckpt, "--trainer.limit_predict_batches", "2")
    saved = np.load(os.path.join(run, "embeddings.npz"))
    data = ImageDataModule("mnist5k")
    data.setup("predict")
    assert sorted(saved.files) == ["embedding", "index", "label"] and len(saved["index"]) == 8
    assert np.array_equal(saved["label"], data.labels[saved["index"]].numpy())
    with torch.no_grad():
        np.testing.assert_allclose(saved["embedding"], load_task(ckpt).eval().encoder(data.images[saved["index"]]).numpy(), atol=1e-5)
