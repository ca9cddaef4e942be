"""A built table and its writers: Markdown, LaTeX (booktabs) and CSV.

A :class:`ResultTable` carries two views of the same numbers. ``cells`` is tidy and
machine-readable and is what the CSV holds. ``display`` contains the formatted strings that
the Markdown and LaTeX writers lay out, with ``bold`` marking the cells to emphasise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pandas as pd

EMPTY_MARKDOWN = "–"
EMPTY_LATEX = "--"

# LaTeX special characters and their escaped forms; ``±`` becomes math so that the
# output compiles without extra packages.
_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "–": "--",
}


@dataclass(frozen=True)
class ResultTable:
    """A table ready to write.

    Attributes:
        name: file stem, for example ``semi_supervised``.
        caption: one-sentence description printed above the table.
        cells: tidy frame of the numbers; each builder documents its columns.
        display: formatted strings, one row per printed line. Columns are a two-level
            MultiIndex (top: a dataset name or ``""``, bottom: the column name).
        bold: booleans of the same shape as ``display``; True marks a best cell.
        footnotes: lines printed under the table, each starting with its marker.
        trials: number of finished trials the measured values come from.
    """

    name: str
    caption: str
    cells: pd.DataFrame
    display: pd.DataFrame
    bold: pd.DataFrame
    footnotes: tuple[str, ...] = ()
    trials: int = 0

    def __post_init__(self) -> None:
        if self.display.shape != self.bold.shape:
            raise ValueError(
                f"table {self.name!r}: display has shape {self.display.shape} "
                f"but bold has shape {self.bold.shape}"
            )
        if not isinstance(self.display.columns, pd.MultiIndex):
            raise ValueError(f"table {self.name!r}: display columns must be a 2-level MultiIndex")


def escape_latex(text: str) -> str:
    """Escape LaTeX special characters (``\\ & % $ # _ { } ~ ^``) and ``±``."""
    return "".join(_LATEX_ESCAPES.get(char, char) for char in text)


def _escape_markdown(text: str) -> str:
    """Escape the characters that would end a cell (``|``) or start emphasis (``*``, ``_``)."""
    for char in "|*_":
        text = text.replace(char, "\\" + char)
    return text


def _columns(table: ResultTable) -> pd.MultiIndex:
    return cast(pd.MultiIndex, table.display.columns)


def _flat_header(columns: pd.MultiIndex) -> list[str]:
    return [f"{top} {bottom}".strip() for top, bottom in columns]


def _column_spans(tops: list[str]) -> list[tuple[str, int, int]]:
    """Group equal neighbouring top-level names into ``(name, first, last)``, 1-based."""
    spans: list[tuple[str, int, int]] = []
    for index, top in enumerate(tops, start=1):
        if spans and spans[-1][0] == top:
            spans[-1] = (top, spans[-1][1], index)
        else:
            spans.append((top, index, index))
    return spans


def _latex_header(columns: pd.MultiIndex) -> list[str]:
    """Return the header lines: spanning dataset names with cmidrules, then column names."""
    spans = _column_spans([str(top) for top in columns.get_level_values(0)])
    lines = []
    if any(name for name, _, _ in spans):
        parts: list[str] = []
        for name, first, last in spans:
            width = last - first + 1
            if name:
                parts.append(rf"\multicolumn{{{width}}}{{c}}{{{escape_latex(name)}}}")
            else:
                parts.extend([""] * width)
        lines.append(" & ".join(parts) + r" \\")
        rules = [rf"\cmidrule(lr){{{first}-{last}}}" for name, first, last in spans if name]
        lines.append(" ".join(rules))
    bottoms = [escape_latex(str(name)) for name in columns.get_level_values(1)]
    lines.append(" & ".join(bottoms) + r" \\")
    return lines


def _body_rows(
    table: ResultTable, escape: Callable[[str], str], empty: str, embolden: Callable[[str], str]
) -> list[list[str]]:
    """Return the display cells row by row: escaped, best cells bold.

    An empty value cell (a column under a dataset name) becomes ``empty``; empty label
    cells stay blank.
    """
    is_value = [top != "" for top in _columns(table).get_level_values(0)]
    rows = []
    pairs = zip(
        table.display.itertuples(index=False), table.bold.itertuples(index=False), strict=True
    )
    for values, bolds in pairs:
        cells = []
        for value, bold, value_column in zip(values, bolds, is_value, strict=True):
            if value == "":
                cells.append(empty if value_column else "")
            else:
                text = escape(str(value))
                cells.append(embolden(text) if bold else text)
        rows.append(cells)
    return rows


def to_markdown(table: ResultTable) -> str:
    """Render as a GitHub pipe table with caption and footnotes; bold as ``**text**``."""
    header = [_escape_markdown(name) for name in _flat_header(_columns(table))]
    lines = [f"**{_escape_markdown(table.caption)}**", ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("| " + " | ".join("---" for _ in header) + " |")
    for cells in _body_rows(table, _escape_markdown, EMPTY_MARKDOWN, lambda t: f"**{t}**"):
        lines.append("| " + " | ".join(cells) + " |")
    if table.footnotes:
        lines.append("")
        lines.extend(f"- {_escape_markdown(note)}" for note in table.footnotes)
    return "\n".join(lines) + "\n"


def to_latex(table: ResultTable) -> str:
    """Render as a LaTeX ``table*`` around a booktabs ``tabular`` (needs the booktabs package).

    Best cells use ``\\textbf``; footnotes follow the tabular as paragraphs.
    """
    tops = table.display.columns.get_level_values(0)
    alignment = "".join("l" if top == "" else "r" for top in tops)
    lines = [r"\begin{table*}[t]", r"\centering", r"\footnotesize"]
    lines.append(rf"\caption{{{escape_latex(table.caption)}}}")
    lines.append(rf"\label{{tab:{table.name}}}")
    lines.append(rf"\begin{{tabular}}{{{alignment}}}")
    lines.append(r"\toprule")
    lines.extend(_latex_header(_columns(table)))
    lines.append(r"\midrule")
    for cells in _body_rows(table, escape_latex, EMPTY_LATEX, lambda t: rf"\textbf{{{t}}}"):
        lines.append(" & ".join(cells) + r" \\")
    lines.append(r"\bottomrule")
    lines.append(r"\end{tabular}")
    lines.extend(rf"\par {escape_latex(note)}" for note in table.footnotes)
    lines.append(r"\end{table*}")
    return "\n".join(lines) + "\n"


def to_csv(table: ResultTable) -> str:
    """Render the tidy ``cells`` frame as CSV (no index column)."""
    return str(table.cells.to_csv(index=False))


def write_table(table: ResultTable, out_dir: Path) -> list[Path]:
    """Write ``<name>.md``, ``<name>.tex`` and ``<name>.csv`` into ``out_dir``; return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix, render in ((".md", to_markdown), (".tex", to_latex), (".csv", to_csv)):
        path = out_dir / f"{table.name}{suffix}"
        path.write_text(render(table), encoding="utf-8")
        written.append(path)
    return written
