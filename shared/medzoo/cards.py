"""Sections of a bundle's model card (``docs/README.md``) that follow from its metadata, in one wording for every
bundle: the data licence of the public data sets its ``data_source`` names, and what its ``eval_metrics`` are."""

from __future__ import annotations

import re
import textwrap

__all__ = ["PUBLIC_DATA_TERMS", "data_licence_section", "evaluation_section", "with_metadata_sections",
           "write_metadata_sections"]

#: Public data sets a ``data_source`` may name, and the terms they are distributed under.
PUBLIC_DATA_TERMS = {
    "NIH ChestX-ray14": "NIH ChestX-ray14 is provided by the NIH Clinical Center under its terms of use (see its "
    "download page)",
    "CheXpert": "CheXpert is provided by Stanford under its research use agreement",
    "Medical Segmentation Decathlon": "the Medical Segmentation Decathlon data are released under CC-BY-SA 4.0",
}
WIDTH = 118


def _section(title: str, text: str) -> str:
    return f"## {title}\n" + textwrap.fill(text, WIDTH, break_on_hyphens=False, break_long_words=False) + "\n"


def data_licence_section(meta: dict) -> str | None:
    """The "Data licence" section for the public data sets named in ``meta["data_source"]``, or ``None`` if it names
    none."""
    named = [terms for data_set, terms in PUBLIC_DATA_TERMS.items() if data_set in meta.get("data_source", "")]
    if not named:
        return None
    return _section("Data licence", (
        "No patient data ships with this bundle: `configs/sample_data.json` generates synthetic phantoms. The public "
        f"data sets it is built for keep their own terms: {'; '.join(named)}. Check each data set's own terms and "
        "accept them yourself before you use it; nothing in this repository grants any right to them."))


def evaluation_section(meta: dict, name: str) -> str:
    """The "Evaluation figures" section: where ``meta["eval_metrics"]`` come from, or that none are recorded."""
    if meta.get("eval_metrics"):
        return _section("Evaluation figures", (
            "`eval_metrics` in `configs/metadata.json` are measured on synthetic phantoms, not real data: "
            f"`medzoo quickstart {name}` trained the bundle briefly (with `configs/demo.json`, or with the overrides "
            "that the `setting` entry names) and `medzoo.eval_metrics.record_eval_metrics` copied what its "
            "`evaluate.json` wrote on the held-out test split; the `setting` entry says exactly what was run. They show "
            "that the pipeline learns, not how a model performs on patients."))
    return _section("Evaluation figures", (
        "No evaluation is recorded: `eval_metrics` in `configs/metadata.json` is empty, since no run of this bundle's "
        "`evaluate.json` has been copied into it (`medzoo.eval_metrics.record_eval_metrics`)."))


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
    return card[:at + 1] + sections + card[at + 1:]


def write_metadata_sections(bundle) -> None:
    """Rewrite ``docs/README.md`` of ``bundle`` (a :class:`medzoo.zoo.Bundle`) with :func:`with_metadata_sections`."""
    from .fileio import atomic_write_text

    card = bundle.root / "docs" / "README.md"
    atomic_write_text(card, with_metadata_sections(card.read_text(), bundle.metadata, bundle.name))
