"""``medzoo``: the zoo's command line (python-fire).

Examples::

    medzoo --help
    medzoo list
    medzoo info cxr14_densenet121_classification
    medzoo sample-data cxr14_densenet121_classification
    medzoo quickstart
    medzoo verify [<bundle>] [--workflows=False]
    medzoo review <bundle or folder>
    medzoo init-weights <bundle> [--format safetensors]
    medzoo convert-weights models/model.pt models/model.safetensors
    medzoo convert chexnet <checkpoint> --output_dir my_bundle
    medzoo index [--check]
    medzoo export <bundle> --format onnx
    medzoo compress <bundle> --method int8_static --dataset_dir <bundle>/sample_data
    medzoo benchmark [<bundle>]
    medzoo package <bundle> [--output_dir dist] [--force]
    medzoo push <bundle> --repo org/name [--private True|False]     (a new repository is private by default)
    medzoo download <bundle> --repo org/name [--version 0.1.0] [--bundle_dir downloads]
    medzoo import-model <folder> --name <bundle_name>
    medzoo select --task classification --max_latency_ms 100 --max_size_mb 50
    medzoo cmr-infer --input_cmr <cine.nii.gz> --input_mask <myo.nii.gz> --slice_index 0 --output mi.nii.gz \
        --motion_checkpoint <motion.pt> --checkpoint <mi.pt>
    medzoo federate <bundle> --clients 2 --rounds 3 [--workdir DIR] [--export_job DIR]

The commands are the methods of :class:`medzoo.cli_commands.ZooCLI`, each a thin call of one library function. A user
mistake (unknown bundle, missing file, bad argument) is a :class:`medzoo.errors.UserError` raised by the library;
:func:`main` prints it as one ``error: ...`` line with exit status 2, as a ``python -m monai.bundle run`` of a bundle
config does. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys

import fire

from .cli_commands import ZooCLI

__all__ = ["command_summary", "main"]


_HELP_FLAGS = ("-h", "--help")


def _first_sentence(docstring: str, limit: int = 110) -> str:
    """The first sentence of a docstring's first paragraph, on one line, without RST markup, at most ``limit`` chars."""
    paragraph = " ".join(docstring.strip().split("\n\n")[0].split()).replace("``", "")
    sentence = paragraph.split(". ")[0].rstrip(".")
    return sentence if len(sentence) <= limit else sentence[: limit - 4].rsplit(" ", 1)[0] + " ..."


def command_summary() -> str:
    """The top-level help: usage, then one line per command (its name as typed, the first line of its docstring)."""
    commands = [
        (name.replace("_", "-"), _first_sentence(getattr(ZooCLI, name).__doc__ or ""))
        for name in sorted(vars(ZooCLI))
        if not name.startswith("_") and callable(getattr(ZooCLI, name))
    ]
    width = max(len(name) for name, _ in commands)
    lines = [
        "usage: medzoo COMMAND [ARGUMENTS]",
        "",
        " ".join((ZooCLI.__doc__ or "").split()).replace("``", ""),
        "",
        "commands:",
    ]
    lines += [f"  {name:{width}s}  {summary}" for name, summary in commands]
    lines += ["", "medzoo COMMAND --help shows the arguments of a command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run the command line; ``medzoo``, ``medzoo -h`` and ``medzoo --help`` print :func:`command_summary`; a user mistake
    (:class:`medzoo.errors.UserError`, including a command line that does not fit the command:
    :func:`medzoo.cli_checks.check_command_line`) ends with one line, no traceback."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or (len(argv) == 1 and argv[0] in _HELP_FLAGS):
        print(command_summary())
        return
    from .cli_checks import check_command_line
    from .errors import exit_on_user_error

    with exit_on_user_error():
        check_command_line(ZooCLI(), argv)  # before fire, which runs a command first and then refuses extra arguments
        fire.Fire(ZooCLI, command=argv, name="medzoo")


if __name__ == "__main__":
    main()
