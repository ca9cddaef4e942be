"""Tests of the IMGID/CoNLL reader on byte-exact fixture files and on the real splits."""

from __future__ import annotations

from pathlib import Path

import pytest

from smvae.conll import DataFormatError, Tweet, read_tweets
from smvae.datasets import DATASETS, sha256_file
from smvae.spans import count_orphan_inside_tags, spans_from_tags

NBSP = "\u00a0"
ZERO_WIDTH_SPACE = "\u200b"
VARIATION_SELECTOR_16 = "\ufe0f"
TWITTER2015_ALIASES = DATASETS["twitter2015"].type_aliases


def write(tmp_path: Path, data: bytes, name: str = "split.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def words_of(tweets: list[Tweet]) -> list[tuple[str, ...]]:
    return [tweet.words for tweet in tweets]


# Whitespace and encoding that real copies contain


def test_invisible_tokens_kept_as_words(tmp_path: Path) -> None:
    lines = [
        "IMGID:1",
        f"{NBSP}\tO",
        "Alice\tB-PER",
        f"{ZERO_WIDTH_SPACE}\tO",
        f"{VARIATION_SELECTOR_16}\tO",
        "",
    ]
    data = "\n".join(lines).encode()
    tweets = read_tweets(write(tmp_path, data))
    assert len(tweets) == 1
    assert tweets[0].words == (NBSP, "Alice", ZERO_WIDTH_SPACE, VARIATION_SELECTOR_16)
    assert tweets[0].tags == ("O", "B-PER", "O", "O")


def test_nbsp_only_tweet_is_not_blank(tmp_path: Path) -> None:
    # A lone U+00A0 token must not be taken for a blank line that ends the tweet.
    data = f"IMGID:1\n{NBSP}\tO\n\nIMGID:2\nb\tO\n".encode()
    tweets = read_tweets(write(tmp_path, data))
    assert words_of(tweets) == [(NBSP,), ("b",)]


@pytest.mark.parametrize(
    "data",
    [
        b"IMGID:1\na\tO\n\nIMGID:2\nb\tB-PER\nc\tI-PER\n",  # no blank line at the end
        b"IMGID:1\na\tO\n\nIMGID:2\nb\tB-PER\nc\tI-PER",  # no newline at the end
        b"IMGID:1\na\tO\n\nIMGID:2\nb\tB-PER\nc\tI-PER\n\n",  # one blank line at the end
    ],
    ids=["no-blank-line", "no-newline", "blank-line"],
)
def test_last_tweet_without_blank_line(tmp_path: Path, data: bytes) -> None:
    tweets = read_tweets(write(tmp_path, data))
    assert [t.image_id for t in tweets] == ["1", "2"]
    assert words_of(tweets) == [("a",), ("b", "c")]
    assert tweets[1].tags == ("B-PER", "I-PER")


def test_repeated_blank_lines(tmp_path: Path) -> None:
    data = b"\n\nIMGID:1\na\tO\n\n\n\n \n\t\nIMGID:2\nb\tO\n\n\n"
    tweets = read_tweets(write(tmp_path, data))
    assert words_of(tweets) == [("a",), ("b",)]
    assert [t.line for t in tweets] == [3, 10]


def test_crlf_line_endings(tmp_path: Path) -> None:
    data = b"IMGID:1\r\nAlice\tB-PER\r\nsmiles\tO\r\n\r\nIMGID:2\r\nParis\tB-LOC\r\n"
    tweets = read_tweets(write(tmp_path, data))
    assert [t.image_id for t in tweets] == ["1", "2"]
    assert words_of(tweets) == [("Alice", "smiles"), ("Paris",)]
    assert tweets[0].tags == ("B-PER", "O")
    assert tweets[1].tags == ("B-LOC",)
    assert [t.line for t in tweets] == [1, 5]


def test_byte_order_mark_ignored(tmp_path: Path) -> None:
    data = b"\xef\xbb\xbfIMGID:42\nAlice\tB-PER\n"
    tweets = read_tweets(write(tmp_path, data))
    assert tweets[0].image_id == "42"
    assert tweets[0].words == ("Alice",)


def test_orphan_inside_tag_kept(tmp_path: Path) -> None:
    data = b"IMGID:1\nthe\tO\nWhite\tI-LOC\nHouse\tI-LOC\nsays\tB-PER\nhi\tI-ORG\n"
    tweets = read_tweets(write(tmp_path, data))
    assert tweets[0].tags == ("O", "I-LOC", "I-LOC", "B-PER", "I-ORG")


def test_other_read_as_misc_through_aliases(tmp_path: Path) -> None:
    data = b"IMGID:1\nSuper\tB-OTHER\nBowl\tI-OTHER\nin\tO\nTexas\tB-LOC\n"
    tweets = read_tweets(write(tmp_path, data), type_aliases=TWITTER2015_ALIASES)
    assert tweets[0].tags == ("B-MISC", "I-MISC", "O", "B-LOC")


def test_tweet_length_and_line(tmp_path: Path) -> None:
    tweets = read_tweets(write(tmp_path, b"IMGID:7\na\tO\nb\tO\nc\tO\n"))
    assert len(tweets[0]) == 3
    assert tweets[0].line == 1


# Rejections: each names the file, the line and the value


def read_error(tmp_path: Path, data: bytes) -> tuple[DataFormatError, Path]:
    path = write(tmp_path, data)
    with pytest.raises(DataFormatError) as caught:
        read_tweets(path)
    return caught.value, path


def test_unknown_tag_rejected(tmp_path: Path) -> None:
    error, path = read_error(tmp_path, b"IMGID:1\na\tO\nb\tB-PERSON\n")
    message = str(error)
    assert f"{path}:3:" in message
    assert "unknown tag" in message
    assert "'B-PERSON'" in message
    assert (error.path, error.line, error.value) == (str(path), 3, "B-PERSON")


def test_other_without_alias_rejected(tmp_path: Path) -> None:
    error, path = read_error(tmp_path, b"IMGID:1\nSuper\tB-OTHER\n")
    assert f"{path}:2:" in str(error)
    assert "'B-OTHER'" in str(error)


def test_line_without_tab_rejected(tmp_path: Path) -> None:
    error, path = read_error(tmp_path, b"IMGID:1\na\tO\nb O\n")
    message = str(error)
    assert f"{path}:3:" in message
    assert "line without a TAB" in message
    assert "'b O'" in message


def test_line_with_two_tabs_rejected(tmp_path: Path) -> None:
    error, path = read_error(tmp_path, b"IMGID:1\na\tO\tO\n")
    assert f"{path}:2:" in str(error)
    assert "more than one TAB" in str(error)


def test_nul_character_rejected(tmp_path: Path) -> None:
    error, path = read_error(tmp_path, b"IMGID:1\nab\x00c\tO\n")
    assert f"{path}:2:" in str(error)
    assert "NUL character" in str(error)


def test_utf16_file_rejected(tmp_path: Path) -> None:
    # UTF-16 text of ASCII is valid UTF-8 with a NUL after each character.
    error, path = read_error(tmp_path, "IMGID:1\na\tO\n".encode("utf-16-le"))
    assert f"{path}:1:" in str(error)
    assert "UTF-8" in str(error)


def test_tweet_without_tokens_rejected(tmp_path: Path) -> None:
    error, path = read_error(tmp_path, b"IMGID:1\na\tO\n\nIMGID:2\n\nIMGID:3\nb\tO\n")
    message = str(error)
    assert f"{path}:4:" in message
    assert "tweet has no tokens" in message
    assert "'IMGID:2'" in message


def test_last_tweet_without_tokens_rejected(tmp_path: Path) -> None:
    error, path = read_error(tmp_path, b"IMGID:1\na\tO\n\nIMGID:2\n\n")
    assert f"{path}:4:" in str(error)
    assert "tweet has no tokens" in str(error)


def test_token_before_imgid_rejected(tmp_path: Path) -> None:
    error, path = read_error(tmp_path, b"\na\tO\nIMGID:1\nb\tO\n")
    message = str(error)
    assert f"{path}:2:" in message
    assert "token line before any IMGID line" in message
    assert "'a\\tO'" in message


def test_duplicate_imgid_rejected(tmp_path: Path) -> None:
    error, path = read_error(tmp_path, b"IMGID:5\na\tO\n\nIMGID:6\nb\tO\n\nIMGID:5\nc\tO\n")
    message = str(error)
    assert f"{path}:7:" in message
    assert "first seen on line 1" in message
    assert "duplicate IMGID" in message
    assert "'5'" in message


def test_line_numbers_count_crlf_and_bom(tmp_path: Path) -> None:
    error, path = read_error(
        tmp_path, b"\xef\xbb\xbfIMGID:1\r\na\tO\r\n\r\nIMGID:2\r\nb\tB-XYZ\r\n"
    )
    assert f"{path}:5:" in str(error)
    assert error.value == "B-XYZ"


def test_missing_file_rejected(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_tweets(tmp_path / "absent.txt")


# The real annotation files

REAL_SPLITS = [
    (dataset, split.name) for dataset, info in DATASETS.items() for split in info.splits.values()
]


@pytest.mark.realdata
@pytest.mark.parametrize(("dataset", "split"), REAL_SPLITS)
def test_real_split_checksum_and_count(real_data_dir: Path, dataset: str, split: str) -> None:
    info = DATASETS[dataset]
    path = real_data_dir / dataset / info.split(split).filename
    assert sha256_file(path) == info.split(split).sha256
    tweets = read_tweets(path, info.type_aliases)
    assert len(tweets) == info.split(split).tweets


def test_registry_tweet_counts() -> None:
    counts = {
        name: tuple(split.tweets for split in info.splits.values())
        for name, info in DATASETS.items()
    }
    assert counts == {"twitter2015": (4000, 1000, 3257), "twitter2017": (3373, 723, 723)}


@pytest.mark.realdata
def test_real_twitter2015_test_entities(real_data_dir: Path) -> None:
    # Read leniently, each of the 135 orphan I- tags opens an entity beside the 5072 B- tags.
    info = DATASETS["twitter2015"]
    tweets = read_tweets(real_data_dir / "twitter2015" / "test.txt", info.type_aliases)
    b_tags = sum(tag.startswith("B-") for tweet in tweets for tag in tweet.tags)
    lenient = sum(len(spans_from_tags(tweet.tags)) for tweet in tweets)
    strict = sum(len(spans_from_tags(tweet.tags, strict=True)) for tweet in tweets)
    orphans = sum(count_orphan_inside_tags(tweet.tags) for tweet in tweets)
    assert b_tags == 5072
    assert lenient == 5207
    assert strict == 5072
    assert orphans == 5207 - 5072
    assert not any(tag.endswith("-OTHER") for tweet in tweets for tag in tweet.tags)


@pytest.mark.realdata
@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_real_twitter2017_has_no_orphans(real_data_dir: Path, split: str) -> None:
    info = DATASETS["twitter2017"]
    tweets = read_tweets(real_data_dir / "twitter2017" / info.split(split).filename)
    assert sum(count_orphan_inside_tags(tweet.tags) for tweet in tweets) == 0
    assert any(tag.startswith("I-") for tweet in tweets for tag in tweet.tags)
