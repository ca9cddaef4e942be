"""Reader for the IMGID/CoNLL annotation format of the Twitter MNER datasets.

Format: UTF-8 lines ``token<TAB>tag``; a line ``IMGID:<id>`` opens each tweet and
blank lines separate tweets. The reader is deliberately strict about structure and
lenient about whitespace that real copies of these files contain:

- a token may be a lone invisible character (U+00A0, U+200B, U+FE0F), so a line is
  never stripped before it is split on TAB; only a trailing CR is removed (CRLF files);
- a byte-order mark at the start of the file is ignored;
- the last tweet may lack its trailing blank line, and several blank lines in a row
  count as one separator.

Tags are kept as written except that dataset type aliases are applied (Twitter-2015's
``OTHER`` becomes ``MISC``). Orphan ``I-`` tags are kept; how they are read is the
business of :mod:`smvae.spans`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from smvae.datasets import ENTITY_TYPES

logger = logging.getLogger(__name__)

IMGID_PREFIX = "IMGID:"
OUTSIDE_TAG = "O"
MAX_VALUE_CHARS = 200  # longer offending values are cut in error messages


class DataFormatError(ValueError):
    """A line of an annotation file that cannot be read; names the file, line and value."""

    def __init__(self, path: str | os.PathLike[str], line: int, value: str, problem: str, fix: str):
        self.path = str(path)
        self.line = line
        self.value = value
        shown = value if len(value) <= MAX_VALUE_CHARS else value[:MAX_VALUE_CHARS] + "..."
        super().__init__(f"{self.path}:{line}: {problem}: {shown!r}. {fix}")


@dataclass(frozen=True)
class Tweet:
    """One annotated tweet: its image id, words and BIO tags (aliases applied)."""

    image_id: str
    words: tuple[str, ...]
    tags: tuple[str, ...]
    line: int  # 1-based line number of the IMGID line, for error messages

    def __len__(self) -> int:
        return len(self.words)


def _is_blank(line: str) -> bool:
    # Only ASCII spaces and tabs make a line blank: str.strip() would also remove a
    # lone U+00A0 token, which is a real word of these files.
    return line.strip(" \t") == ""


def normalise_tag(
    tag: str,
    aliases: Mapping[str, str],
    entity_types: Iterable[str] = ENTITY_TYPES,
) -> str | None:
    """Return the tag with its type alias applied, or None when it is not a valid BIO tag."""
    if tag == OUTSIDE_TAG:
        return tag
    prefix, dash, entity_type = tag.partition("-")
    if dash != "-" or prefix not in ("B", "I"):
        return None
    entity_type = aliases.get(entity_type, entity_type)
    if entity_type not in set(entity_types):
        return None
    return f"{prefix}-{entity_type}"


def read_tweets(
    path: str | os.PathLike[str],
    type_aliases: Mapping[str, str] | None = None,
    entity_types: Iterable[str] = ENTITY_TYPES,
) -> list[Tweet]:
    """Read every tweet of one annotation file.

    Raises:
        FileNotFoundError: the file does not exist.
        DataFormatError: an unknown tag, a line without a TAB, a tweet with no
            tokens, a token line before any IMGID line, or an IMGID repeated within
            the file. The message names the file, the line and the value.
    """
    path = Path(path)
    aliases = dict(type_aliases or {})
    known_types = tuple(entity_types)
    allowed = ", ".join(["O"] + [f"{p}-{t}" for t in known_types for p in "BI"])
    alias_text = "".join(f", {p}-{a}" for a in aliases for p in "BI")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line_number = data[: error.start].count(b"\n") + 1
        raise DataFormatError(
            path,
            line_number,
            repr(data[error.start : error.start + 4]),
            f"invalid UTF-8 ({error.reason})",
            "Convert the file to UTF-8.",
        ) from None

    tweets: list[Tweet] = []
    first_line_of: dict[str, int] = {}
    image_id: str | None = None
    opened_at = 0
    words: list[str] = []
    tags: list[str] = []

    def close_tweet() -> None:
        if image_id is None:
            return
        if not words:
            raise DataFormatError(
                path,
                opened_at,
                f"{IMGID_PREFIX}{image_id}",
                "tweet has no tokens",
                "Add its token lines or remove the IMGID line.",
            )
        tweets.append(Tweet(image_id, tuple(words), tuple(tags), opened_at))

    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw[:-1] if raw.endswith("\r") else raw
        if "\x00" in line:
            raise DataFormatError(
                path,
                number,
                line,
                "NUL character in line",
                "Save the file as UTF-8 text; a UTF-16 file reads as text with a NUL "
                "after each character.",
            )
        if _is_blank(line):
            continue
        if line.startswith(IMGID_PREFIX):
            close_tweet()
            image_id = line[len(IMGID_PREFIX) :].strip()
            if any(character.isspace() for character in image_id):
                raise DataFormatError(
                    path,
                    number,
                    line,
                    "IMGID contains whitespace",
                    "Write it as IMGID:<image id> on a line of its own.",
                )
            if not image_id:
                raise DataFormatError(
                    path, number, line, "IMGID line has no id", "Write it as IMGID:<image id>."
                )
            if image_id in first_line_of:
                raise DataFormatError(
                    path,
                    number,
                    image_id,
                    f"duplicate IMGID (first seen on line {first_line_of[image_id]})",
                    "Each tweet of a split needs its own image id.",
                )
            first_line_of[image_id] = number
            opened_at = number
            words, tags = [], []
            continue
        if image_id is None:
            raise DataFormatError(
                path,
                number,
                line,
                "token line before any IMGID line",
                "Each tweet must start with a line IMGID:<image id>.",
            )
        fields = line.split("\t")
        if len(fields) != 2:
            problem = "line without a TAB" if len(fields) == 1 else "line with more than one TAB"
            raise DataFormatError(
                path, number, line, problem, "Token lines must be <token><TAB><tag>."
            )
        word, tag = fields
        if word == "":
            raise DataFormatError(
                path, number, line, "empty token", "Each token line needs a non-empty token."
            )
        normalised = normalise_tag(tag, aliases, known_types)
        if normalised is None:
            raise DataFormatError(
                path,
                number,
                tag,
                "unknown tag",
                f"Allowed tags: {allowed}{alias_text}.",
            )
        words.append(word)
        tags.append(normalised)
    close_tweet()
    if not tweets:
        raise DataFormatError(
            path, 1, "", "no tweets", "An annotation file needs at least one IMGID line."
        )
    logger.debug("read %d tweets from %s", len(tweets), path)
    return tweets
