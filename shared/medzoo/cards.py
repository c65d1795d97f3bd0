"""Sections of a bundle's model card (``docs/README.md``) that are generated, in one wording for every bundle: the
data licence of the public data sets its ``data_source`` names and what its ``eval_metrics`` are (from its metadata),
and its "Performance" section (from the measurement reports in its ``docs/`` folder, rendered by
:mod:`medzoo.card_performance`).

Each generated section runs from its level-2 heading to the next; the rest of the card is written by hand and
quotes no measured figures (``tests/test_cards.py`` checks both)."""

from __future__ import annotations

import re
from pathlib import Path

from .card_performance import performance_section
from .card_text import section

__all__ = [
    "GENERATED_SECTIONS",
    "PUBLIC_DATA_TERMS",
    "data_licence_section",
    "evaluation_section",
    "render_card",
    "with_metadata_sections",
    "with_performance_section",
    "write_card_sections",
    "write_metadata_sections",
]

#: Titles of the generated sections of a model card.
GENERATED_SECTIONS = ("Performance", "Data licence", "Evaluation figures")

#: Public data sets a ``data_source`` may name, and the terms they are distributed under.
PUBLIC_DATA_TERMS = {
    "NIH ChestX-ray14": "NIH ChestX-ray14 is provided by the NIH Clinical Center under its terms of use (see its "
    "download page)",
    "CheXpert": "CheXpert is provided by Stanford under its research use agreement",
    "Medical Segmentation Decathlon": "the Medical Segmentation Decathlon data are released under CC-BY-SA 4.0",
}


def data_licence_section(meta: dict) -> str | None:
    """The "Data licence" section for the public data sets named in ``meta["data_source"]``, or ``None`` if it names
    none."""
    named = [terms for data_set, terms in PUBLIC_DATA_TERMS.items() if data_set in meta.get("data_source", "")]
    if not named:
        return None
    return section(
        "Data licence",
        (
            "No patient data ships with this bundle: `configs/sample_data.json` generates synthetic phantoms. The public "
            f"data sets it is built for keep their own terms: {'; '.join(named)}. Check each data set's own terms and "
            "accept them yourself before you use it; nothing in this repository grants any right to them."
        ),
    )


def evaluation_section(meta: dict, name: str) -> str:
    """The "Evaluation figures" section: where ``meta["eval_metrics"]`` come from, or that none are recorded."""
    if meta.get("eval_metrics"):
        return section(
            "Evaluation figures",
            (
                "`eval_metrics` in `configs/metadata.json` are measured on synthetic phantoms, not real data: "
                f"`medzoo quickstart {name}` trained the bundle briefly (with `configs/demo.json`, or with the overrides "
                "that the `setting` entry names) and `medzoo.eval_metrics.record_eval_metrics` copied what its "
                "`evaluate.json` wrote on the held-out test split; the `setting` entry says exactly what was run. They show "
                "that the pipeline learns, not how a model performs on patients."
            ),
        )
    return section(
        "Evaluation figures",
        (
            "No evaluation is recorded: `eval_metrics` in `configs/metadata.json` is empty, since no run of this bundle's "
            "`evaluate.json` has been copied into it (`medzoo.eval_metrics.record_eval_metrics`)."
        ),
    )


def with_metadata_sections(card: str, meta: dict, name: str) -> str:
    """``card`` (markdown) with its "Data licence" and "Evaluation figures" sections replaced by the current ones, or
    inserted before "## License" (at the end if there is none)."""
    titles = ("Data licence", "Evaluation figures")
    for title in titles:  # a section runs from its heading to the next level-2 heading
        card = re.sub(rf"(?ms)^## {title}\n.*?(?=^## |\Z)", "", card)
    sections = "".join(s + "\n" for s in (data_licence_section(meta), evaluation_section(meta, name)) if s)
    at = card.find("\n## License\n")
    if at < 0:
        return card.rstrip("\n") + "\n\n" + sections.rstrip("\n") + "\n"
    return card[: at + 1] + sections + card[at + 1 :]


def write_metadata_sections(bundle) -> None:
    """Rewrite ``docs/README.md`` of ``bundle`` (a :class:`medzoo.zoo.Bundle`) with :func:`with_metadata_sections`."""
    from .fileio import atomic_write_text

    card = bundle.root / "docs" / "README.md"
    atomic_write_text(card, with_metadata_sections(card.read_text(), bundle.metadata, bundle.name))


def with_performance_section(card: str, docs: Path, name: str) -> str:
    """``card`` with its "Performance" section replaced by :func:`medzoo.card_performance.performance_section`, or
    inserted before "## Limitations" (else before "## License", else at the end)."""
    performance = performance_section(docs, name)
    pattern = r"(?ms)^## Performance\n.*?(?=^## |\Z)"
    if re.search(pattern, card):
        return re.sub(pattern, lambda _: performance + "\n", card, count=1)
    for heading in ("\n## Limitations\n", "\n## License\n"):
        at = card.find(heading)
        if at >= 0:
            return card[: at + 1] + performance + "\n" + card[at + 1 :]
    return card.rstrip("\n") + "\n\n" + performance


def render_card(card: str, meta: dict, docs: Path, name: str) -> str:
    """``card`` with every generated section current: "Performance", "Data licence", "Evaluation figures"."""
    return with_metadata_sections(with_performance_section(card, docs, name), meta, name)


def write_card_sections(bundle) -> None:
    """Rewrite ``docs/README.md`` of ``bundle`` (a :class:`medzoo.zoo.Bundle`) with :func:`render_card`."""
    from .fileio import atomic_write_text

    card = bundle.root / "docs" / "README.md"
    atomic_write_text(card, render_card(card.read_text(), bundle.metadata, card.parent, bundle.name))
