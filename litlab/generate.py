"""``python -m platform generate --ckpt_path runs/gpt_small --prompt "The government said"``: text from a checkpoint.

Any causal language model's checkpoint: the main job's (configs/gpt_small.yaml), a fine-tuned one (gpt_sft.yaml),
a distillation's student (distill_gpt_small.yaml). The prompt is tokenized with the tokenizer the run trained
with (saved in its checkpoint); each completion streams to the terminal as its tokens are sampled, after its
prompt, and with ``--out`` goes to a JSONL file too, one record per prompt. Generation keeps a KV cache
(``tasks.nets.gpt.KVCache``). Each prompt is sampled from ``--seed`` afresh, so its completion does not depend
on the prompts before it; ``--temperature 0`` is greedy.
"""

import argparse
import json
import os
import sys
import time

import torch

from core.checkpoints import read_checkpoint, saved_tokenizer
from datamodules.tokenizers import tokenizer_from_str
from litlab.runs import add_checkpoint_arguments, find_checkpoint
from tasks.causal_lm import CausalLM
from tasks.checkpoints import load_task, main_task

REPLACEMENT = "\ufffd"  # what a decoder shows for the bytes of a character not all sampled yet


def check_settings(args) -> None:
    """One line for a setting out of range."""
    if not args.temperature >= 0:
        raise ValueError(f"--temperature {args.temperature}: expected a number >= 0 (0 is greedy)")
    if args.top_k is not None and args.top_k < 1:
        raise ValueError(f"--top_k {args.top_k}: expected a whole number >= 1 (sample from the k most likely tokens)")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise ValueError(
            f"--top_p {args.top_p}: expected a number in (0, 1] (sample from the most likely tokens that hold that probability)"
        )
    if args.max_new_tokens < 1:
        raise ValueError(f"--max_new_tokens {args.max_new_tokens}: expected a whole number >= 1")
    if args.out is not None and os.path.exists(args.out):
        raise ValueError(f"--out {args.out}: the file exists and generate never overwrites one: expected a new file name")


def read_prompts(path: str) -> list[str]:
    """The prompts of a ``.txt`` file (one a line) or a ``.jsonl`` file (a ``"prompt"`` field a line; blank lines skipped)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--prompts {path}: no such file")
    kind = os.path.splitext(path)[1]
    if kind not in (".txt", ".jsonl"):
        raise ValueError(f'--prompts {path}: expected a .txt file (one prompt a line) or a .jsonl file (a "prompt" field a line)')
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except UnicodeDecodeError as err:
        raise ValueError(f"--prompts {path}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    prompts = []
    for number, line in enumerate(lines, 1):
        if kind == ".txt":
            prompt = line
        elif not line.strip():
            continue
        else:
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f'--prompts {path} line {number}: not JSON ({err.msg}): expected an object with a "prompt" field') from err
            prompt = row.get("prompt") if isinstance(row, dict) else None
            if not isinstance(prompt, str):
                raise ValueError(f'--prompts {path} line {number}: expected an object with a "prompt" field holding text')
        if not prompt:
            raise ValueError(f"--prompts {path} line {number}: an empty prompt: expected text to continue")
        prompts.append(prompt)
    if not prompts:
        raise ValueError(f"--prompts {path}: no prompts in the file: expected one prompt a line")
    return prompts


def load(path: str):
    """The causal language model a checkpoint holds (a distillation's: its student), the tokenizer its run trained
    with and the step it was saved at; refused in one line when the checkpoint is of another kind."""
    checkpoint = read_checkpoint(path, what="generate --ckpt_path")
    task_class = main_task(checkpoint)[0]
    if not issubclass(task_class, CausalLM):
        raise ValueError(
            f"generate --ckpt_path {path}: a checkpoint of {task_class.__module__}.{task_class.__qualname__}, which does not generate text: "
            "expected a causal language model's (tasks.CausalLM: gpt_small, gpt_sft, or a distillation into one)"
        )
    tokenizer = saved_tokenizer(checkpoint)
    if tokenizer is None:
        raise ValueError(
            f"generate --ckpt_path {path}: the checkpoint stores no tokenizer: expected one of a run on text (a text datamodule saves it)"
        )
    task = load_task(path, checkpoint)
    if not hasattr(task.net, "stream"):
        raise ValueError(
            f"generate --ckpt_path {path}: its network, {type(task.net).__name__}, does not stream tokens: expected a tasks.nets.GPT"
        )
    return task, tokenizer_from_str(tokenizer), checkpoint.get("global_step")


def label(prompt: str) -> str:
    return repr(prompt if len(prompt) <= 40 else prompt[:40] + "...")


def stream_text(net, tokenizer, ids: list[int], args, eos_id: int | None, device: torch.device) -> tuple[list[int], str]:
    """Generate one completion, printing its text as it grows; returns its token ids and its text. A byte-level
    tokenizer may split a character over several tokens: the growing text is decoded whole and a piece is printed
    once no character is left incomplete, so nothing is garbled."""
    generator = torch.Generator(device=device).manual_seed(args.seed)
    tokens, printed = [], ""
    steps = net.stream(torch.tensor([ids], device=device), args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                       top_p=args.top_p, eos_id=eos_id, generator=generator)  # fmt: skip
    for token in steps:
        tokens.append(token)
        text = tokenizer.decode(tokens)
        if not text.endswith(REPLACEMENT) and text.startswith(printed):
            print(text[len(printed) :], end="", flush=True)
            printed = text
    completion = tokenizer.decode(tokens)
    print(completion[len(printed) :] if completion.startswith(printed) else "", flush=True)
    return tokens, completion


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m platform generate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_checkpoint_arguments(parser)
    given = parser.add_mutually_exclusive_group(required=True)
    given.add_argument("--prompt", action="append", help="a prompt; repeat for several")
    given.add_argument("--prompts", metavar="FILE", help='prompts from a .txt file (one a line) or a .jsonl file (a "prompt" field a line)')
    parser.add_argument("--max_new_tokens", type=int, default=256, help="tokens to generate at most per prompt (default: 256); past the "
                        "model's context the window slides")  # fmt: skip
    parser.add_argument("--temperature", type=float, default=0.8, help="divides the logits; 0 is greedy (default: 0.8)")
    parser.add_argument("--top_k", type=int, help="sample from the k most likely tokens only")
    parser.add_argument("--top_p", type=float, help="nucleus sampling: from the most likely tokens that hold this probability, in (0, 1]")
    parser.add_argument("--seed", type=int, default=0, help="the seed each prompt is sampled from (default: 0)")
    parser.add_argument("--no_stop", action="store_true", help="go on past the end-of-text token, to --max_new_tokens")
    parser.add_argument("--out", metavar="FILE.jsonl", help="also write one JSON record per prompt here (a new file: never overwritten)")
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda (default: cuda where there is one)"
    )
    args = parser.parse_args(argv)

    check_settings(args)
    prompts = read_prompts(args.prompts) if args.prompts else args.prompt
    empty = next((i for i, p in enumerate(prompts, 1) if not p), None)
    if empty is not None:
        raise ValueError(f"--prompt '' (prompt {empty} of {len(prompts)}): an empty prompt: expected text to continue")
    try:
        device = torch.device(args.device)
    except RuntimeError as err:
        raise ValueError(f"--device {args.device}: expected cpu or cuda ({err})") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: no CUDA device here: expected --device cpu")

    path = find_checkpoint(args, "generate")
    task, tokenizer, step = load(path)
    net = task.net.to(device).eval()
    encoded = tokenizer.encode_batch(prompts)
    for prompt, ids in zip(prompts, encoded):
        if len(ids) > net.block_size:
            raise ValueError(
                f"prompt {label(prompt)}: {len(ids)} tokens: expected at most the model's context, block_size {net.block_size}"
            )
    eos_id = None if args.no_stop else tokenizer.eos_id
    settings = {"checkpoint": path, "max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "top_k": args.top_k,
                "top_p": args.top_p, "seed": args.seed, "stop_at_end_of_text": eos_id is not None}  # fmt: skip
    parameters = sum(p.numel() for p in net.parameters())
    print(
        f"{path}: {type(task).__name__} of step {step}, {parameters:,} parameters, context {net.block_size} tokens, on {device}",
        file=sys.stderr,
    )

    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    out = open(args.out, "x", encoding="utf-8") if args.out else None  # "x": fails rather than overwrite a file made meanwhile
    start, generated, i = time.perf_counter(), 0, 0
    try:
        for i, (prompt, ids) in enumerate(zip(prompts, encoded)):
            if i:
                print(flush=True)  # a blank line between completions
            print(prompt, end="", flush=True)
            tokens, completion = stream_text(net, tokenizer, ids, args, eos_id, device)
            generated += len(tokens)
            if out:
                ended = "end_of_text" if eos_id is not None and tokens[-1] == eos_id else "max_new_tokens"
                row = {"prompt": prompt, "completion": completion, "tokens": tokens, "finish_reason": ended, "settings": settings}
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                out.flush()
    except KeyboardInterrupt:
        print(f"\nstopped by SIGINT after {i} of {len(prompts)} completions" + (f", written to {args.out}" if out else ""), file=sys.stderr)
        return 130
    finally:
        if out:
            out.close()
    seconds = time.perf_counter() - start
    written = f"; written to {args.out}" if out else ""
    print(
        f"{len(prompts)} completion(s), {generated} tokens in {seconds:.1f} s ({generated / seconds:,.0f} tokens/s){written}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
