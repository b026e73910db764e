"""Bad input is refused in one line that names the file, the place and what was expected, rather than
trained on as garbage or ending in a traceback: a binary or non-UTF-8 file, a JSONL line that is not a
record with a text field, a CSV file without its columns. And a BPE's tokenizer.json changed in a token
cache is caught, like a changed token file, and the cache rebuilt."""

import bz2
import os
import re
import shutil
from pathlib import Path

import pytest

from datamodules import TextDataModule
from datamodules.corpora import PACKAGED, read_documents, read_text, resolve_files
from datamodules.labeled_text import read_labeled
from tests.helpers import error_line

GPT_NANO = ("fit", "--config", "configs/gpt_nano.yaml", "--trainer.logger", "false")
CLASSIFIER = ("fit", "--config", "configs/classify_bbc_gpt.yaml", "--trainer.logger", "false", "--model.init_args.backbone_ckpt", "null",
              "--data.init_args.tokenizer", "bytes")  # fmt: skip
# a PNG's signature, then every byte value: 113 control bytes of 1,032, the first (0x1a) at offset 6
BINARY = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
NOT_TEXT = ("not a text file: 113 of its 1,032 bytes are control characters, the first at byte offset 6 (0x1a); "
            "expected UTF-8 text (at most 1% control bytes)")
NO_LABEL = "no record has it, so no text has a label: expected at least 2 classes; set data.label_field"
NOT_UTF8 = "is not UTF-8 (invalid continuation byte); expected a UTF-8 text file (convert it, e.g. iconv -f latin1 -t utf-8)"


def documents(path) -> list[str]:
    return list(read_documents([str(path)], "auto"))


def texts(path, **fields) -> list[str]:
    return read_labeled(str(path), **fields)[0]


def refusal(read, path, **fields) -> str:
    """The message ``read(path)`` raises, checked to be one line."""
    with pytest.raises(ValueError) as err:
        read(path, **fields)
    assert "\n" not in str(err.value)
    return str(err.value)


def cli_error(message: str) -> str:
    return f"error: {message}  (PLATFORM_DEBUG=1 shows the traceback)"


def assert_no_run_left(tmp_path) -> None:
    runs = tmp_path / "runs"  # the cli fixture's run.dir
    assert not runs.exists() or os.listdir(runs) == []


# -- what is not text ----------------------------------------------------------------------------------
def test_a_binary_file_is_refused_naming_its_first_control_byte(tmp_path):
    path = tmp_path / "lib.txt"
    path.write_bytes(BINARY)
    assert refusal(documents, path) == f"{path}: {NOT_TEXT}"


def test_over_one_percent_of_control_bytes_is_binary(tmp_path):
    path = tmp_path / "log.txt"
    path.write_bytes(b"x" * 1980 + b"\x1b" * 20)  # 1%: text
    assert documents(path) == ["x" * 1980 + "\x1b" * 20]
    path.write_bytes(b"x" * 1979 + b"\x1b" * 21)
    assert refusal(documents, path) == (
        f"{path}: not a text file: 21 of its 2,000 bytes are control characters, the first at byte offset 1979 (0x1b); "
        "expected UTF-8 text (at most 1% control bytes)"
    )


def test_a_latin1_file_is_refused_naming_its_line_and_byte_offset(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("First line\nCafé au lait\n".encode("latin-1"))
    assert refusal(documents, path) == f"{path}:2: byte 0xe9 at byte offset 14 {NOT_UTF8}"


def test_real_text_is_read_as_it_is(tmp_path):
    """Tabs, form feeds, a short escape sequence and a byte-order mark are text; newlines read as a text file's."""
    path = tmp_path / "notes.txt"
    path.write_bytes(b"\xef\xbb\xbfTabs\tand\r\nform\x0cfeed, \x1b[1mbold\x1b[0m\rend\n")
    assert documents(path) == ["Tabs\tand\nform\x0cfeed, \x1b[1mbold\x1b[0m\nend\n"]
    records = tmp_path / "docs.jsonl"  # CRLF line ends, and a line separator inside a string: not a line of the file
    records.write_text('{"text": "a\u2028b"}\r\n\r\n{"text": "c", "label": "x"}\r\n', encoding="utf-8", newline="")
    assert documents(records) == ["a\u2028b", "c"]


@pytest.mark.parametrize("corpus", PACKAGED)
def test_the_packaged_corpora_are_text(corpus):
    try:
        files, fmt = resolve_files(corpus)
    except FileNotFoundError as err:
        pytest.skip(str(err))
    docs = list(read_documents(files, fmt))
    assert docs and all(docs)
    if corpus == "bbc_news":  # one Latin-1 byte, a pound sign, in 5 MB: replaced, as it always was, not refused
        pound = next(f for f in files if f.endswith(os.path.join("sports", "199.txt")))
        assert "a \ufffd15.8m signing from Parma" in docs[files.index(pound)]
        with pytest.raises(ValueError, match=re.escape(f"{pound}:5: byte 0xa3 at byte offset 257 is not UTF-8 (invalid start byte)")):
            read_text(pound)  # as a user's file would be


# -- JSONL records: both readers --------------------------------------------------------------------------
JSONL = {
    "not JSON": (b'{"text": "fine"}\n\n{"text": "fine", "x": 1,}\n',
                 "3: not valid JSON (Expecting property name enclosed in double quotes at column 25); expected one JSON object per line"),
    "not an object": (b'{"text": "fine"}\n[1, 2]\n', "2: the line is a list ([1, 2]), expected a JSON object (one per line)"),
    "no text field": (b'{"text": "fine"}\n{"body": "x", "id": 3}\n', "2: no field 'text' (fields: body, id); set data.text_field"),
    "text an int": (b'{"text": "fine"}\n{"text": "ok"}\n{"text": 12345}\n', "3: field 'text' is an int (12345), expected a string"),
    "text null": (b'{"text": null}\n', "1: field 'text' is null, expected a string"),
    "not UTF-8": ('{"text": "fine"}\n{"text": "Café"}\n'.encode("latin-1"), f"2: byte 0xe9 at byte offset 30 {NOT_UTF8}"),
}  # fmt: skip


@pytest.mark.parametrize("read", [documents, texts])
@pytest.mark.parametrize("case", JSONL)
def test_a_bad_jsonl_record_is_refused_naming_its_line_and_field(tmp_path, case, read):
    data, message = JSONL[case]
    path = tmp_path / "data.jsonl"
    path.write_bytes(data)
    assert refusal(read, path) == f"{path}:{message}"


def test_labels_absent_or_null_are_none_a_list_is_refused(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "a", "label": 0}\n{"text": "b", "label": 1}\n{"text": "c"}\n{"text": "d", "label": null}\n')
    assert read_labeled(str(path)) == (["a", "b", "c", "d"], ["0", "1", "", ""])  # 0 is a label
    path.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": ["x", "y"]}\n')
    assert refusal(texts, path) == f'{path}:2: field \'label\' is a list (["x", "y"]), expected a string or a number'


# -- CSV/TSV -------------------------------------------------------------------------------------------------
def test_a_missing_text_column_is_refused_at_the_header(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text("review,stars\ngood,pos\nbad,neg\n")
    assert refusal(texts, path) == f"{path}:1: no column 'text' (columns: review, stars); set data.text_field"


def test_a_label_column_no_file_has_is_refused(tmp_path):
    labelled, unlabelled = tmp_path / "a.tsv", tmp_path / "b.tsv"
    labelled.write_text("text\tlabel\ngood\tpos\nbad\tneg\n")
    unlabelled.write_text("text\nfine\n")
    assert read_labeled([str(labelled), str(unlabelled)]) == (["good", "bad", "fine"], ["pos", "neg", ""])  # a file of unlabelled texts
    message = f"{unlabelled}:1: no column 'stars' (columns: text); {NO_LABEL}"
    assert refusal(texts, unlabelled, label_field="stars") == message


def test_a_row_short_of_the_text_column_is_refused(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text('label,text\npos,"good,\nvery good"\nneg\n')
    assert refusal(texts, path) == f"{path}:4: no value in column 'text': the row has fewer fields than the header"


def test_a_non_utf8_or_broken_compressed_csv_is_refused(tmp_path):
    path = tmp_path / "reviews.csv.bz2"
    path.write_bytes(bz2.compress("text,label\ngood,pos\ncafé,neg\n".encode("latin-1")))
    assert refusal(texts, path) == f"{path}:3: byte 0xe9 at byte offset 23 {NOT_UTF8}"
    broken = tmp_path / "reviews.csv.gz"
    broken.write_bytes(b"text,label\n")
    assert refusal(texts, broken) == f"{broken}: not a valid .gz file (Not a gzipped file (b'te'))"


# -- through the CLI: one line, exit status 2, no run directory ---------------------------------------------------
def test_cli_refuses_a_binary_corpus(cli, capsys, tmp_path):
    path = tmp_path / "lib.txt"
    path.write_bytes(BINARY)
    assert error_line(cli, capsys, *GPT_NANO, "--data.init_args.corpus", str(path)) == cli_error(f"{path}: {NOT_TEXT}")
    assert_no_run_left(tmp_path)


def test_cli_refuses_a_jsonl_text_that_is_not_a_string(cli, capsys, tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "In the beginning"}\n\n{"text": 12345}\n')
    line = error_line(cli, capsys, *GPT_NANO, "--data.init_args.corpus", str(path))
    assert line == cli_error(f"{path}:3: field 'text' is an int (12345), expected a string")
    assert_no_run_left(tmp_path)


def test_cli_refuses_a_latin1_corpus(cli, capsys, tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("First line\nCafé au lait\n".encode("latin-1"))
    line = error_line(cli, capsys, *GPT_NANO, "--data.init_args.corpus", str(path))
    assert line == cli_error(f"{path}:2: byte 0xe9 at byte offset 14 {NOT_UTF8}")
    assert_no_run_left(tmp_path)


def test_cli_refuses_a_csv_without_the_label_column(cli, capsys, tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text("review,stars\ngood,pos\nbad,neg\n")
    line = error_line(cli, capsys, *CLASSIFIER, "--data.init_args.source", str(path), "--data.init_args.text_field", "review")
    assert line == cli_error(f"{path}:1: no column 'label' (columns: review, stars); {NO_LABEL}")
    assert_no_run_left(tmp_path)


# -- a BPE token cache whose tokenizer.json changed -------------------------------------------------------
def test_a_changed_tokenizer_json_in_a_bpe_cache_is_rebuilt_with_one_warning_line(cli, capsys, tmp_path, token_cache):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for file in resolve_files("bbc_news")[0][:40]:  # 40 real articles: a BPE of 300 trains in a fraction of a second
        shutil.copy(file, corpus)
    bpe = ("--data.init_args.corpus", str(corpus / "*.txt"), "--data.init_args.tokenizer", "bpe", "--data.init_args.bpe_vocab_size", "300",
           "--trainer.max_steps", "1")  # fmt: skip
    cli(*GPT_NANO, *bpe)
    cache = TextDataModule(corpus=str(corpus / "*.txt"), tokenizer="bpe", bpe_vocab_size=300, cache_dir=token_cache).cache_path
    tokenizer = Path(cache, "tokenizer.json")
    built = tokenizer.read_bytes()
    assert built.count(b'": 257,') == built.count(b'": 258,') == 1  # two merged tokens' ids swapped: the same size, still a valid tokenizer
    changed = built.replace(b'": 257,', b'": @@@,').replace(b'": 258,', b'": 257,').replace(b'": @@@,', b'": 258,')
    tokenizer.write_bytes(changed)
    capsys.readouterr()

    cli(*GPT_NANO, *bpe)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "token cache" in line]
    checksum = "tokenizer.json: contents differ from the sha256 checksum recorded when the cache was built"
    assert warnings == [f"warning: token cache {cache} is corrupt ({checksum}): rebuilding it"]
    assert tokenizer.read_bytes() == built  # rebuilt: the tokenizer the tokens came from
    assert sorted(os.listdir(tmp_path / "runs")) == ["gpt_nano", "gpt_nano-2"]  # both trained
