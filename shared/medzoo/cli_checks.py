"""Check a ``medzoo`` command line against the command's signature before anything runs.

python-fire calls a command with the arguments it can match and only then complains about the rest (so
``medzoo quickstart --no_such_flag`` would run the whole quickstart first), prints several lines of its own usage
text for a missing argument, and passes a value of the wrong type (``--seed abc``) on to the library. This check
refuses such a command line up front with one :class:`UsageError`: what is wrong and the command's usage on one line.

It follows fire's reading of arguments: ``--name value``, ``--name=value``, ``--name`` alone for True and
``--noname`` for False, names with ``-`` or ``_``, ``-x`` for the one parameter starting with x, then positionals filling the parameters not given by name, in
order. A parameter annotated ``int``, ``float`` or ``bool`` (or ``... | None``) must get a value of that type as fire
parses it (a Python literal, else a string). A command without parameters that returns an object (``monailabel``)
is a group: the next word is a command of that object. Help (``-h``, ``--help``) and fire's own flags after ``--``
are left to fire.
"""

from __future__ import annotations

import ast
import inspect
import re
import typing
from collections.abc import Callable, Sequence

from .errors import UserError

__all__ = ["UsageError", "check_command_line", "usage_line"]

#: Arguments that hand the command line to fire unchecked: help, and fire's own flags after a ``--`` separator.
FIRE_OWN = ("-h", "--help", "--")

#: Annotated parameter types whose values are checked, with the word used in the message.
CHECKED_TYPES = {int: "an integer", float: "a number", bool: "True or False"}


class UsageError(UserError):
    """A command line that does not fit the command: unknown command or flag, missing or extra argument, or a value
    of the wrong type. The message ends with the command's usage."""


def _parameters(function: Callable) -> list[inspect.Parameter]:
    return [p for p in inspect.signature(function).parameters.values() if p.name != "self"]


def usage_line(prog: str, function: Callable) -> str:
    """``prog`` followed by the arguments of ``function``: required ones as NAME, the others as [--name VALUE]."""
    words = [prog]
    for p in _parameters(function):
        if p.kind is p.VAR_POSITIONAL:
            words.append(f"[{p.name.upper()}...]")
        elif p.kind is p.VAR_KEYWORD:
            words.append("[--ID VALUE...]")
        elif p.default is p.empty:
            words.append(p.name.upper())
        else:
            words.append(f"[--{p.name} {p.name.upper()}]")
    return " ".join(words)


def _parse_value(text: str) -> object:
    """A command-line value as fire reads it: a Python literal if it is one, else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def _checked_type(function: Callable, name: str) -> type | None:
    """The type of :data:`CHECKED_TYPES` that parameter ``name`` is annotated with (alone or with None), or None."""
    try:
        hint = typing.get_type_hints(function).get(name)
    except Exception:  # an annotation naming something not importable at run time: nothing to check
        return None
    options = [a for a in typing.get_args(hint) if a is not type(None)] if typing.get_args(hint) else [hint]
    return options[0] if len(options) == 1 and options[0] in CHECKED_TYPES else None


def _type_fits(value: object, expected: type) -> bool:
    if value is None:
        return True
    if expected is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    return isinstance(value, (int, float) if expected is float else expected)


def _is_flag(token: str) -> bool:
    """Whether fire reads ``token`` as a flag: ``--name[=value]`` or ``-x[=value]`` (a negative number is a value)."""
    return (token.startswith("--") and len(token) > 2) or re.match(r"-[A-Za-z](=|$)", token) is not None


def _is_group(function: Callable) -> bool:
    """A command without parameters or return annotation returns an object whose methods are commands."""
    signature = inspect.signature(function)
    return not _parameters(function) and signature.return_annotation is inspect.Signature.empty


def _check_call(prog: str, function: Callable, args: Sequence[str]) -> None:
    """Raise :class:`UsageError` if ``args`` do not fit ``function``'s parameters (see the module docstring)."""
    parameters = _parameters(function)
    named = {p.name: p for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    any_name = any(p.kind is p.VAR_KEYWORD for p in parameters)
    usage = f"usage: {usage_line(prog, function)} (details: `{prog} --help`)"

    def refuse(problem: str) -> None:
        raise UsageError(f"{prog}: {problem}; {usage}")

    given: dict[str, object] = {}
    positionals: list[str] = []
    index = 0
    while index < len(args):
        token = args[index]
        index += 1
        if not _is_flag(token):
            positionals.append(token)
            continue
        name, has_value, text = token.lstrip("-").partition("=")
        name = name.replace("-", "_")
        if not token.startswith("--") and len(name) == 1:  # fire's -x: the one parameter whose name starts with x
            matches = [n for n in named if n.startswith(name)]
            name = matches[0] if len(matches) == 1 else name
        if not has_value and name not in named and name.startswith("no") and name[2:] in named:
            name, value = name[2:], False
        elif has_value:
            value = _parse_value(text)
        elif index < len(args) and not _is_flag(args[index]):
            value, index = _parse_value(args[index]), index + 1
        else:
            value = True
        if name not in named and not any_name:
            refuse(f"unknown argument --{name}")
        given[name] = value
    free = [p for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD and p.name not in given]
    takes_more = any(p.kind is p.VAR_POSITIONAL for p in parameters)
    if len(positionals) > len(free) and not takes_more:
        refuse(f"unexpected argument {positionals[len(free)]!r}")
    for parameter, text in zip(free, positionals):
        given[parameter.name] = _parse_value(text)
    for parameter in parameters:
        if parameter.name in named and parameter.default is parameter.empty and parameter.name not in given:
            refuse(f"missing {parameter.name.upper()}")
    for name, value in given.items():
        expected = _checked_type(function, name) if name in named else None
        if expected is not None and not _type_fits(value, expected):
            refuse(f"--{name} expects {CHECKED_TYPES[expected]}, got {value!r}")


def check_command_line(root: object, argv: Sequence[str], prog: str = "medzoo") -> None:
    """Check ``argv`` (without the program name) against the commands of ``root`` (fire's component: an object
    whose public methods are the commands; ``-`` in a command name stands for ``_``) before fire runs it.

    Raises:
        UsageError: an unknown command or argument, a missing or extra argument, or a value of the wrong type.
    """
    if any(token in FIRE_OWN for token in argv):
        return
    component, args = root, list(argv)
    while args:
        word, args = args[0], args[1:]
        commands = sorted(n for n in dir(component) if not n.startswith("_") and callable(getattr(component, n)))
        name = word.replace("-", "_")
        if name not in commands:
            listing = ", ".join(c.replace("_", "-") for c in commands)
            raise UsageError(f"{prog}: unknown command {word!r} (commands: {listing}); `{prog} --help` lists them")
        prog = f"{prog} {word}"
        function = getattr(component, name)
        if _is_group(function) and args:
            component = function()  # a group of commands (e.g. monailabel): the next word names one of them
            continue
        _check_call(prog, function, args)
        return
