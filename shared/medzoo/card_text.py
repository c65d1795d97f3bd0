"""Layout of the generated text of a model card (:mod:`medzoo.cards`, :mod:`medzoo.card_performance`): paragraphs
wrapped at :data:`WIDTH` columns, level-2 sections and Markdown tables."""

from __future__ import annotations

import textwrap

__all__ = ["WIDTH", "paragraph", "section", "table"]

#: Column at which generated paragraphs are wrapped.
WIDTH = 118


def paragraph(text: str) -> str:
    """``text`` wrapped at :data:`WIDTH` columns (words and hyphenated words never split), ending with a newline."""
    return textwrap.fill(text, WIDTH, break_on_hyphens=False, break_long_words=False) + "\n"


def section(title: str, text: str) -> str:
    """A level-2 section ``## title`` whose body is the :func:`paragraph` of ``text``."""
    return f"## {title}\n" + paragraph(text)


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table of ``rows`` under ``header``, ending with a newline."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"
