"""A review of the code a bundle's configs execute, before anything of the bundle runs.

Bundle configs execute Python (``$`` expressions, ``_target_``): :func:`review_config` / :func:`review_bundle_configs`
list every import, expression and ``_target_`` that reaches outside the trusted packages, so a user can review a
bundle from elsewhere before running it; :func:`print_config_review` prints that list for a zoo bundle. What is trusted,
safe or denied is in :mod:`medzoo.config_review_rules`.
"""

from __future__ import annotations

import ast
import builtins
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .config_review_rules import (
    RISKY_ATTRIBUTES,
    SAFE_BUILTINS,
    TRUSTED_PACKAGES,
    path_reason,
    root_package,
    target_path,
)

if TYPE_CHECKING:
    from .zoo import Bundle

__all__ = ["ReviewItem", "print_config_review", "review_bundle_configs", "review_config"]

#: Names MONAI's ConfigParser makes available to every expression without an import.
_PARSER_GLOBALS = {"monai": "monai", "torch": "torch", "np": "numpy", "numpy": "numpy"}

_REF = re.compile(r"@([\w#]+)")


@dataclass(frozen=True)
class ReviewItem:
    """One config entry that executes code from outside the trusted packages (or a risky call)."""

    file: str
    id: str
    kind: str  # "import", "expression" or "_target_"
    text: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.id}: {self.kind} {self.text!r} ({self.reason})"


def _bound_names(tree: ast.AST) -> set[str]:
    """Names an expression binds itself: comprehension and lambda variables, walrus targets."""
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.comprehension):
            bound |= {n.id for n in ast.walk(node.target) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.Lambda):
            bound |= {a.arg for a in node.args.args + node.args.kwonlyargs}
        elif isinstance(node, ast.NamedExpr):
            bound.add(node.target.id)
    return bound


def _expression_reasons(code: str, aliases: dict[str, str], trusted: tuple[str, ...]) -> list[str]:
    """Why the ``$`` expression ``code`` reaches outside the trusted packages (empty list: it does not)."""
    source = _REF.sub(lambda m: "__ref_" + re.sub(r"\W", "_", m.group(1)), code).strip()
    try:
        tree = ast.parse(source, mode="exec")
    except SyntaxError:
        return ["not parseable Python"]
    reasons: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or "."]
            for module in modules:
                if root_package(module) not in trusted:
                    reasons.append(f"imports {module}")
                aliases.update(
                    {
                        (a.asname or a.name.split(".")[0]): (
                            module if isinstance(node, ast.Import) else f"{module}.{a.name}"
                        )
                        for a in node.names
                    }
                )
    bound = _bound_names(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            name = node.id
            if name.startswith("__ref_") or name in bound or name in SAFE_BUILTINS:
                continue
            module = aliases.get(name)
            if module is None:
                why = "builtin" if hasattr(builtins, name) else "name not imported in the config"
                reasons.append(f"uses {name} ({why})")
            elif root_package(module) not in trusted:
                reasons.append(f"uses {name} from {module}")
        elif isinstance(node, ast.Attribute) and (node.attr in RISKY_ATTRIBUTES or node.attr.startswith("__")):
            reasons.append(f"calls or reads .{node.attr}")
        if isinstance(node, ast.Attribute):
            names, inner = [node.attr], node.value
            while isinstance(inner, ast.Attribute):
                names.insert(0, inner.attr)
                inner = inner.value
            module = aliases.get(inner.id) if isinstance(inner, ast.Name) and inner.id not in bound else None
            if module and root_package(module) in trusted:
                reason = path_reason(".".join([module, *names]), trusted)
                if reason:
                    reasons.append(reason)
    return sorted(set(reasons))


def _walk(config: object, prefix: str = "") -> Iterator[tuple[str, object]]:
    """(id, value) of every leaf and dict in a raw config, ids joined with ``#`` as MONAI does."""
    if isinstance(config, dict):
        yield prefix, config
        for key, value in config.items():
            yield from _walk(value, f"{prefix}#{key}" if prefix else str(key))
    elif isinstance(config, list):
        for i, value in enumerate(config):
            yield from _walk(value, f"{prefix}#{i}" if prefix else str(i))
    else:
        yield prefix, config


def review_config(
    config: object,
    file: str = "<config>",
    trusted: tuple[str, ...] = TRUSTED_PACKAGES,
    aliases: dict[str, str] | None = None,
) -> list[ReviewItem]:
    """List the entries of a raw (unparsed) config that execute code reaching outside ``trusted``.

    Listed: every ``$import``/``imports`` entry of another package; every ``$`` expression that uses a name not
    imported from a trusted package (``os``, ``subprocess``, builtins such as ``open`` or ``eval``) or a risky
    attribute (:data:`medzoo.config_review_rules.RISKY_ATTRIBUTES`, dunder attributes); every ``_target_`` that is a
    dotted path outside the trusted packages (a bare class name is looked up by MONAI in ``monai.*`` only) or a ``$``
    expression.

    ``aliases`` maps names bound by earlier ``$import`` entries to their module; it is updated in place, so the configs
    of one bundle can be reviewed in the order MONAI merges them.
    """
    aliases = dict(_PARSER_GLOBALS) if aliases is None else aliases
    items: list[ReviewItem] = []
    leaves = list(_walk(config))
    imports_first = sorted(
        leaves,
        key=lambda kv: not (isinstance(kv[1], str) and kv[1].lstrip("$").lstrip().startswith(("import ", "from "))),
    )
    for key, value in imports_first:
        if isinstance(value, dict):
            target = value.get("_target_")
            if isinstance(target, str) and not target.startswith(("$", "@")):
                target_id = f"{key}#_target_" if key else "_target_"
                path = target_path(target)
                if "." in path and root_package(path) not in trusted:
                    items.append(
                        ReviewItem(file, target_id, "_target_", target, f"class or function from {root_package(path)}")
                    )
                elif "." not in path and hasattr(builtins, path) and path not in SAFE_BUILTINS:
                    items.append(ReviewItem(file, target_id, "_target_", target, f"the builtin {path}"))
                elif target.split(".")[-1] in RISKY_ATTRIBUTES:
                    items.append(ReviewItem(file, target_id, "_target_", target, "risky callable"))
                elif "." in path and (reason := path_reason(path, trusted)):
                    items.append(ReviewItem(file, target_id, "_target_", target, reason))
            continue
        if not (isinstance(value, str) and value.startswith("$")):
            continue
        code = value[1:]
        is_import = code.lstrip().startswith(("import ", "from "))
        reasons = _expression_reasons(code, aliases, trusted)
        if reasons:
            kind = "_target_" if key.endswith("#_target_") else ("import" if is_import else "expression")
            items.append(ReviewItem(file, key, kind, value, "; ".join(reasons)))
    return sorted(items, key=lambda i: (i.file, i.id))


def _expand_macros(config: object, root: Path, file: str) -> tuple[object, list[ReviewItem]]:
    """Replace every ``%path#id`` macro that pulls from another file with that file's entry, as MONAI does before
    parsing (with MONAI's own id and path parsing); nothing is evaluated. The path is taken relative to the bundle
    folder (the working folder its README runs it from); a macro reaching outside the bundle, or one that cannot be
    resolved, is itself a review item. ``%id`` macros within the file need no expansion: the entry is reviewed where
    it is."""
    import copy

    from monai.bundle import ConfigParser

    problems: list[ReviewItem] = []

    def expand(value: object, id_: str) -> object:
        if isinstance(value, dict):
            return {k: expand(v, f"{id_}#{k}" if id_ else str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [expand(v, f"{id_}#{i}" if id_ else str(i)) for i, v in enumerate(value)]
        if not (isinstance(value, str) and value.startswith("%")):
            return value
        try:
            path, ids = ConfigParser.split_path_id(ConfigParser.resolve_relative_ids(id_, value)[1:])
        except ValueError:
            return value
        if not path:
            return value
        source = Path(os.path.normpath(root / path))
        if Path(path).is_absolute() or not source.is_relative_to(root):
            problems.append(
                ReviewItem(file, id_, "macro", value, "pulls config content from a file outside the bundle")
            )
            return value
        try:
            return copy.deepcopy(ConfigParser(config=ConfigParser.load_config_file(source))[ids])
        except Exception as e:  # missing file or id: MONAI would fail too, but the content cannot be reviewed
            problems.append(ReviewItem(file, id_, "macro", value, f"cannot be resolved in the bundle ({e})"))
            return value

    return expand(config, ""), problems


def review_bundle_configs(root: str | os.PathLike, trusted: tuple[str, ...] = TRUSTED_PACKAGES) -> list[ReviewItem]:
    """:func:`review_config` over every JSON/YAML config of the bundle at ``root``, plus every Python file it ships.

    Macros that pull entries from other files (``%path#id``) are expanded first, so the entry is judged where it
    runs. Configs are reviewed in name order, each with the imports of ``train.json`` / ``inference.json`` (the configs
    others are merged on) in scope. A ``.py`` file in the bundle is code that ``_target_`` can reach (MONAI adds the
    bundle folder to ``sys.path``), so each is listed for review.
    """
    import yaml

    root = Path(root).resolve()
    configs = sorted(p for p in (root / "configs").iterdir() if p.suffix in (".json", ".yaml", ".yml"))
    loaded = {}
    for path in configs:
        with open(path) as f:
            loaded[path] = json.load(f) if path.suffix == ".json" else yaml.safe_load(f)
    base_aliases = dict(_PARSER_GLOBALS)
    for base in ("train.json", "inference.json"):
        if (root / "configs" / base) in loaded:
            review_config(loaded[root / "configs" / base], trusted=trusted, aliases=base_aliases)
    items: list[ReviewItem] = []
    for path, config in loaded.items():
        file = str(path.relative_to(root))
        expanded, macro_items = _expand_macros(config, root, file)
        items += macro_items + review_config(expanded, file=file, trusted=trusted, aliases=dict(base_aliases))
    for script in sorted(root.rglob("*.py")):
        items.append(
            ReviewItem(
                str(script.relative_to(root)),
                "-",
                "python file",
                script.name,
                "code shipped in the bundle, importable by _target_",
            )
        )
    return items


def print_config_review(bundle: Bundle, log: Callable[[str], None] | None = None) -> list[ReviewItem]:
    """:func:`review_bundle_configs` of a zoo bundle, with one line per item to ``log`` (after a summary line).

    Reads the configs as data: nothing of the bundle runs. Returns the items.
    """
    items = review_bundle_configs(bundle.root)
    if log is not None:
        log(
            f"{bundle.name}: {len(items)} config item(s) reach outside {'/'.join(TRUSTED_PACKAGES)}; review them:"
            if items
            else f"{bundle.name}: every config item stays within {'/'.join(TRUSTED_PACKAGES)}"
        )
        for item in items:
            log(f"  {item}")
    return items
