"""Generation: the KV cache gives the logits and tokens of re-running the whole context, sampling keeps to
top-k/top-p and its seed, and ``python -m platform generate`` streams what it writes to JSONL from the
checkpoints of gpt_small, gpt_sft and distill_gpt_small, refusing bad input in one line."""

import argparse
import json
import os
import re

import pytest
import torch

from datamodules.tokenizers import ByteTokenizer, load_tokenizer
from litlab.cli import main
from litlab.generate import stream_text
from tasks.checkpoints import load_task
from tasks.nets.gpt import GPT, KVCache, sample_next
from tests.helpers import fit
from tests.shrink import shrunk_config


def tiny_gpt(**kw) -> GPT:
    torch.manual_seed(0)
    return GPT(**{"vocab_size": 50, "block_size": 16, "n_layer": 2, "n_head": 2, "n_embd": 16, **kw}).eval()


POSITIONS = [{"positions": "learned"}, {"positions": "rotary", "norm": "rmsnorm", "qk_norm": True, "activation": "relu2"}]


# -- the network -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kw", POSITIONS, ids=["learned", "rotary"])
def test_cached_logits_equal_the_full_forward(kw):
    """A prompt of 5, then single tokens, then a chunk of 3 at an offset: each position's logits are those of
    one forward over the whole sequence."""
    model = tiny_gpt(**kw)
    x = torch.randint(0, 50, (2, 12))
    cache = KVCache(model.n_layer, model.block_size)
    pieces = [x[:, :5], x[:, 5:6], x[:, 6:7], x[:, 7:8], x[:, 8:9], x[:, 9:12]]
    cached = torch.cat([model.token_logits(model.features(piece, cache=cache)) for piece in pieces], dim=1)
    assert cache.pos == 12
    torch.testing.assert_close(cached, model(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="sequence length 17 exceeds the model's block_size 16"):
        model.features(x[:, :5], cache=cache)


@pytest.mark.parametrize("kw", POSITIONS, ids=["learned", "rotary"])
def test_greedy_tokens_with_the_cache_are_those_without_also_past_block_size(kw):
    model = tiny_gpt(**kw)
    prompt = torch.randint(0, 50, (3, 4))
    for new in (1, 12, 30):  # 30: the window slides past block_size 16
        cached = model.generate(prompt, new, temperature=0.0)
        assert cached.shape == (3, 4 + new) and torch.equal(cached[:, :4], prompt)
        assert torch.equal(cached, model.generate(prompt, new, temperature=0.0, use_cache=False))
    long_prompt = torch.randint(0, 50, (1, 20))  # longer than the context from the start: cropped, as before
    assert torch.equal(model.generate(long_prompt, 5, temperature=0.0), model.generate(long_prompt, 5, temperature=0.0, use_cache=False))
    assert list(model.stream(prompt[:1], 30, temperature=0.0)) == model.generate(prompt[:1], 30, temperature=0.0)[0, 4:].tolist()


def test_top_k_and_top_p_sample_only_the_tokens_they_keep():
    logits = torch.log(torch.tensor([[0.05, 0.4, 0.1, 0.3, 0.15]])).repeat(2000, 1)
    drawn = lambda **kw: set(sample_next(logits, generator=torch.Generator().manual_seed(0), **kw).flatten().tolist())  # noqa: E731
    assert drawn() == {0, 1, 2, 3, 4}
    assert drawn(top_k=2) == {1, 3}
    assert drawn(top_p=0.5) == {1, 3}  # 0.4 < 0.5: the next most likely, 0.3, is needed to reach it
    assert drawn(top_p=0.7) == {1, 3}  # 0.4 + 0.3 reaches 0.7
    assert drawn(top_p=0.71) == {1, 3, 4}
    assert drawn(top_p=0.01) == {1}  # the most likely token always stays
    assert drawn(top_p=1.0) == {0, 1, 2, 3, 4}
    assert drawn(top_k=3, top_p=0.6) == {1, 3}
    assert drawn(top_k=1, temperature=5.0) == {1}
    assert sample_next(logits[:1], temperature=0.0).item() == 1


def test_a_seed_reproduces_and_sampling_leaves_the_global_rng_alone():
    model = tiny_gpt()
    prompt = torch.tensor([[1, 2, 3]])
    state = torch.get_rng_state()
    first = model.generate(prompt, 20, temperature=1.0, generator=torch.Generator().manual_seed(7))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first, model.generate(prompt, 20, temperature=1.0, generator=torch.Generator().manual_seed(7)))
    assert not torch.equal(first, model.generate(prompt, 20, temperature=1.0, generator=torch.Generator().manual_seed(8)))
    assert list(model.stream(prompt, 20, temperature=1.0, generator=torch.Generator().manual_seed(7))) == first[0, 3:].tolist()
    # the same draws without a cache: the cache changes how logits are computed, not what is sampled
    assert torch.equal(first, model.generate(prompt, 20, temperature=1.0, generator=torch.Generator().manual_seed(7), use_cache=False))


def test_rows_stop_at_end_of_text_and_are_padded_with_it():
    model = tiny_gpt()
    prompt = torch.tensor([[1, 2, 3], [4, 5, 6]])
    free = model.generate(prompt, 12, temperature=0.0)
    eos = free[0, 5].item()  # row 0's third new token
    stopped = model.generate(prompt, 12, temperature=0.0, eos_id=eos)
    first_eos = [(row[3:] == eos).nonzero()[0].item() if (row[3:] == eos).any() else None for row in free]
    end = max(12 if f is None else f + 1 for f in first_eos)  # generation ends once every row has stopped
    assert stopped.shape == (2, 3 + end)
    for row, f in enumerate(first_eos):
        if f is None:
            assert torch.equal(stopped[row], free[row, : 3 + end])
        else:  # up to and including end-of-text, then end-of-text
            assert torch.equal(stopped[row, : 4 + f], free[row, : 4 + f]) and (stopped[row, 4 + f :] == eos).all()
    streamed = list(model.stream(prompt[:1], 12, temperature=0.0, eos_id=eos))
    assert streamed == free[0, 3:].tolist()[: first_eos[0] + 1] and streamed[-1] == eos


def test_cached_generation_stays_eager_in_a_compiled_task():
    """tasks.base compiles a network's ``features`` in place; one token at a time, a compiled one would recompile
    at every new position, so the cache decodes with the class's own."""
    model, prompt = tiny_gpt(), torch.tensor([[1, 2, 3]])
    expected = model.generate(prompt, 5, temperature=0.0)
    model.features = lambda *args, **kwargs: pytest.fail("the instance's (compiled) features decoded a token")
    assert torch.equal(model.generate(prompt, 5, temperature=0.0), expected)


def test_an_encoder_does_not_generate_nor_stream_a_batch():
    with pytest.raises(ValueError, match="causal=False"):
        tiny_gpt(causal=False).generate(torch.tensor([[1]]), 1)
    with pytest.raises(ValueError, match="one prompt at a time"):
        next(tiny_gpt().stream(torch.tensor([[1], [2]]), 1))


# -- python -m platform generate ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, token_cache) -> dict[str, str]:
    """Last checkpoints of gpt_small, gpt_sft, distill_gpt_small and classify_bbc_gpt, shrunk (tests/shrink.py,
    as tests/test_cli.py runs them, so that a session builds their token caches once), 2 steps each."""
    configs, runs = tmp_path_factory.mktemp("configs"), str(tmp_path_factory.mktemp("runs"))
    found = {}
    for name in ("gpt_small", "gpt_sft", "distill_gpt_small", "classify_bbc_gpt"):  # gpt_small first: the others start from it
        path, _ = shrunk_config(name, str(configs), runs, token_cache)
        fit(
            "--config", path, "--run.dir", runs, "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1", "--trainer.logger", "false"
        )
        found[name] = os.path.join(runs, name, "checkpoints", "last.ckpt")
    return found


def generate(capsys, *args: str) -> tuple[int, str, str]:
    """``python -m platform generate *args`` in this process: its exit status, stdout and stderr."""
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", *args])
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


@pytest.mark.parametrize("name", ["gpt_small", "gpt_sft", "distill_gpt_small"])
def test_generate_streams_what_it_writes_to_jsonl(checkpoints, capsys, tmp_path, name):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        json.dumps({"prompt": "Article: Shares rose.\nHeadline:"}) + "\n\n" + json.dumps({"prompt": "The government said"}) + "\n"
    )
    out = tmp_path / "out" / "completions.jsonl"
    run = os.path.dirname(os.path.dirname(checkpoints[name]))  # a run directory: its last checkpoint
    code, stdout, stderr = generate(capsys, "--ckpt_path", run, "--prompts", str(prompts), "--max_new_tokens", "12", "--top_k", "20",
                                    "--top_p", "0.9", "--seed", "3", "--out", str(out))  # fmt: skip
    assert code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["prompt"] for r in rows] == ["Article: Shares rose.\nHeadline:", "The government said"]
    assert stdout == "\n".join(r["prompt"] + r["completion"] + "\n" for r in rows)  # each prompt and its completion, a blank line between
    for r in rows:
        assert 1 <= len(r["tokens"]) <= 12 and r["finish_reason"] in ("end_of_text", "max_new_tokens")
        settings = {"max_new_tokens": 12, "temperature": 0.8, "top_k": 20, "top_p": 0.9, "seed": 3, "stop_at_end_of_text": True}
        assert r["settings"] == {"checkpoint": checkpoints[name], **settings}
    assert stderr.splitlines()[0].startswith(f"{checkpoints[name]}: CausalLM of step 2, ")
    assert f"2 completion(s), {sum(len(r['tokens']) for r in rows)} tokens in" in stderr.splitlines()[-1]

    # each prompt is sampled from the seed afresh: alone, the second prompt gets the same completion
    code, alone, _ = generate(capsys, "--ckpt_path", checkpoints[name], "--prompt", "The government said", "--max_new_tokens", "12",
                              "--top_k", "20", "--top_p", "0.9", "--seed", "3")  # fmt: skip
    assert code == 0 and alone == rows[1]["prompt"] + rows[1]["completion"] + "\n"


def test_greedy_generation_is_the_networks_and_stops_at_end_of_text(checkpoints, capsys, tmp_path):
    ckpt = checkpoints["gpt_small"]
    net, tokenizer = load_task(ckpt).net.eval(), load_tokenizer(ckpt)
    ids = torch.tensor(tokenizer.encode_batch(["The government said"]))
    expected = net.generate(ids, 40, temperature=0.0, use_cache=False)[0, ids.size(1) :].tolist()
    runs, prompts = os.path.dirname(os.path.dirname(os.path.dirname(ckpt))), tmp_path / "prompts.txt"
    prompts.write_text("The government said\n")
    code, stdout, _ = generate(capsys, "--ckpt_path", "last", "--name", "gpt_small", "--run_dir", runs, "--prompts", str(prompts),
                               "--max_new_tokens", "40", "--temperature", "0", "--out", str(tmp_path / "greedy.jsonl"))  # fmt: skip
    row = json.loads((tmp_path / "greedy.jsonl").read_text())
    assert code == 0 and row["tokens"] == expected and stdout == "The government said" + tokenizer.decode(expected) + "\n"

    # a final norm of 0 makes every logit 0, and greedy takes the first of equals: id 0, end-of-text
    assert tokenizer.eos_id == 0
    state = torch.load(ckpt, weights_only=True)
    state["state_dict"]["net.ln_f.weight"].zero_()
    torch.save(state, tmp_path / "eos.ckpt")
    for extra, tokens, finish in (([], [0], "end_of_text"), (["--no_stop"], [0] * 5, "max_new_tokens")):
        out = tmp_path / f"eos{len(extra)}.jsonl"
        code, stdout, _ = generate(capsys, "--ckpt_path", str(tmp_path / "eos.ckpt"), "--prompt", "The", "--max_new_tokens", "5",
                                   "--temperature", "0", "--out", str(out), *extra)  # fmt: skip
        row = json.loads(out.read_text())
        assert code == 0 and stdout == "The\n"
        assert row["tokens"] == tokens and row["completion"] == "" and row["finish_reason"] == finish


def test_bad_input_gets_one_line_and_exit_status_2(checkpoints, capsys, tmp_path):
    ckpt = checkpoints["gpt_small"]

    def refused(*args: str) -> str:
        code, stdout, stderr = generate(capsys, *args)
        assert code == 2 and stdout == "" and len(stderr.splitlines()) == 1, stderr
        return stderr.strip()

    nowhere = str(tmp_path / "runs" / "nowhere")
    assert (
        refused("--ckpt_path", nowhere, "--prompt", "The")
        == f"error: --ckpt_path {nowhere}: no such file or run directory; expected 'last', 'best', a run directory or a .ckpt file"
    )
    assert refused("--ckpt_path", "last", "--prompt", "The").startswith(
        "error: generate --ckpt_path last: of which run? expected --name NAME"
    )
    assert refused("--ckpt_path", "last", "--name", "nowhere", "--run_dir", str(tmp_path), "--prompt", "The").startswith(
        f"error: --ckpt_path last: no checkpoint to resume, {tmp_path}/nowhere/checkpoints/last.ckpt does not exist"
    )
    classifier = checkpoints["classify_bbc_gpt"]
    assert refused("--ckpt_path", classifier, "--prompt", "The") == (
        f"error: generate --ckpt_path {classifier}: a checkpoint of tasks.classification.Classification, which does not generate text: "
        "expected a causal language model's (tasks.CausalLM: gpt_small, gpt_sft, or a distillation into one)")  # fmt: skip
    assert (
        refused("--ckpt_path", ckpt, "--prompt", "The", "--prompt", "")
        == "error: --prompt '' (prompt 2 of 2): an empty prompt: expected text to continue"
    )
    (tmp_path / "empty.txt").write_text("")
    assert (
        refused("--ckpt_path", ckpt, "--prompts", str(tmp_path / "empty.txt"))
        == f"error: --prompts {tmp_path}/empty.txt: no prompts in the file: expected one prompt a line"
    )
    (tmp_path / "gap.txt").write_text("The\n\nA\n")
    assert (
        refused("--ckpt_path", ckpt, "--prompts", str(tmp_path / "gap.txt"))
        == f"error: --prompts {tmp_path}/gap.txt line 2: an empty prompt: expected text to continue"
    )
    (tmp_path / "bad.jsonl").write_text('{"prompt": "The"}\n{"text": "A"}\n')
    assert refused("--ckpt_path", ckpt, "--prompts", str(tmp_path / "bad.jsonl")) == (
        f"error: --prompts {tmp_path}/bad.jsonl line 2: expected an object with a \"prompt\" field holding text")  # fmt: skip
    (tmp_path / "taken.jsonl").write_text("mine\n")
    assert refused("--ckpt_path", ckpt, "--prompt", "The", "--out", str(tmp_path / "taken.jsonl")) == (
        f"error: --out {tmp_path}/taken.jsonl: the file exists and generate never overwrites one: expected a new file name")  # fmt: skip
    assert (tmp_path / "taken.jsonl").read_text() == "mine\n"
    out_of_range = {"--temperature": ("-1", "-1.0: expected a number >= 0"), "--top_k": ("0", "0: expected a whole number >= 1"),
                    "--top_p": ("1.5", "1.5: expected a number in (0, 1]"), "--max_new_tokens": ("0", "0: expected a whole number >= 1")}  # fmt: skip
    for option, (value, expected) in out_of_range.items():
        assert refused("--ckpt_path", ckpt, "--prompt", "The", option, value).startswith(f"error: {option} {expected}")
    long = " ".join(["government"] * 200)
    line = refused("--ckpt_path", ckpt, "--prompt", long, "--out", str(tmp_path / "never.jsonl"))
    expected = r"error: prompt 'government government government governm\.\.\.': 2\d\d tokens: expected at most the model's context, block_size 128"
    assert re.fullmatch(expected, line)
    assert not (tmp_path / "never.jsonl").exists()


def test_the_terminal_never_sees_half_a_character(capsys):
    """A byte-level tokenizer splits "é" and "✓" over several tokens: their text is printed once whole."""

    class Bytes:  # a net that "samples" the bytes of a text, then end-of-text
        def stream(self, idx, max_new_tokens, **kw):
            yield from [*"héllo ✓".encode("utf-8"), 256]

    settings = argparse.Namespace(seed=0, max_new_tokens=20, temperature=1.0, top_k=None, top_p=None)
    tokens, completion = stream_text(Bytes(), ByteTokenizer(), [104], settings, 256, torch.device("cpu"))
    assert completion == "héllo ✓" and tokens[-1] == 256
    assert capsys.readouterr().out == "héllo ✓\n"
