"""Reads an offline W&B run (``run-<id>.wandb``) back, for tests.

The file is a LevelDB-style log of protobuf ``Record`` messages (wandb's internal format, which is
why pyproject pins wandb for tests): a 7-byte header, then 32 KiB blocks of chunks, each with a
7-byte header (crc32, length, type: full, first, middle, last)."""

import glob
import json
import os
import struct

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: str) -> list[pb.Record]:
    data = open(path, "rb").read()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, chunks, out = 7, b"", []
    while pos + 7 <= len(data):
        space = BLOCK - pos % BLOCK
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if space < 7 or kind == 0:  # block padding
            pos += space
            continue
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        chunks = chunk if kind in (FULL, FIRST) else chunks + chunk
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(chunks)
            out.append(record)
    return out


def read_run(run_dir: str) -> list[dict]:
    """Every offline W&B segment in ``<run_dir>/wandb``, in the order they started: its run id, config,
    history rows and exit code (None when the run was never finished).

    Not in the order of their folders' names: two segments started in the same second are
    ``offline-run-<time>-<id>`` and ``offline-run-<time>-<id>-1``, and "-" sorts before "/"."""
    segments = []
    for path in glob.glob(os.path.join(run_dir, "wandb", "offline-run-*", "run-*.wandb")):
        segment = {"path": path, "run_id": None, "started": None, "config": {}, "history": [], "exit_code": None}
        for record in records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                segment["run_id"], segment["started"] = record.run.run_id, record.run.start_time.ToNanoseconds()
                segment["tags"], segment["group"] = list(record.run.tags), record.run.run_group
            elif kind == "config":
                segment["config"].update({item.key: json.loads(item.value_json) for item in record.config.update})
            elif kind == "exit":  # written when the run is finished (closed), with the process's exit status
                segment["exit_code"] = record.exit.exit_code
            elif kind == "history":
                segment["history"].append({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item})
        segments.append(segment)
    return sorted(segments, key=lambda segment: segment["started"])
