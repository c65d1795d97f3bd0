"""What :mod:`medzoo.config_review` judges a config by: the trusted packages, the builtins and attribute names that
are safe or risky, the modules and callables of the trusted packages that load or run code, and the resolution of a
dotted path (an attribute path of an expression, a ``_target_``) to the objects it names.

:func:`path_reason` says why a dotted path rooted in a trusted package reaches something untrusted; only modules of
the trusted packages are imported to find out, never a bundle's.
"""

from __future__ import annotations

__all__ = [
    "DENIED_CALLABLES",
    "DENIED_MODULES",
    "RISKY_ATTRIBUTES",
    "SAFE_BUILTINS",
    "TRUSTED_PACKAGES",
    "path_reason",
    "root_package",
    "target_path",
]

#: Packages whose names a config may use without being listed by :func:`medzoo.config_review.review_config`.
#: ``ignite`` is the engine library MONAI's workflows are built on.
TRUSTED_PACKAGES = ("monai", "torch", "numpy", "medzoo", "ignite")

#: Builtins an expression may call without being listed: pure functions on values.
SAFE_BUILTINS = frozenset(
    {
        "abs",
        "all",
        "any",
        "bool",
        "dict",
        "divmod",
        "enumerate",
        "float",
        "frozenset",
        "int",
        "isinstance",
        "len",
        "list",
        "map",
        "max",
        "min",
        "range",
        "reversed",
        "round",
        "set",
        "slice",
        "sorted",
        "str",
        "sum",
        "tuple",
        "zip",
        "None",
        "True",
        "False",
    }
)

#: Attribute names that reach code execution, file loading or the network even inside a trusted package
#: (e.g. ``monai.utils.optional_import('subprocess')``, ``torch.hub.load``, ``numpy.load(allow_pickle=True)``).
RISKY_ATTRIBUTES = frozenset(
    {
        "optional_import",
        "import_module",
        "load",
        "loads",
        "hub",
        "system",
        "popen",
        "Popen",
        "exec",
        "eval",
        "compile",
        "download_url",
        "urlopen",
        "rmtree",
        "remove",
        "unlink",
    }
)

#: Modules of the trusted packages that load or run code, compile native code or reach the network; anything an
#: attribute path reaches in them is listed.
DENIED_MODULES = (
    "torch.hub",
    "torch.package",
    "torch.utils.cpp_extension",
    "torch.serialization",
    "torch.jit._serialization",
    "monai.bundle.scripts",
    "monai.bundle.config_parser",
    "monai.bundle.config_item",
    "monai.bundle.reference_resolver",
    "monai.apps.utils",
    "numpy.f2py",
    "numpy.ctypeslib",
    "numpy.testing",
    "numpy.lib._npyio_impl",
    "numpy.lib.npyio",
    "medzoo.hub",
    "medzoo.archives",
    "medzoo.downloads",
    "medzoo.config_review",
    "medzoo.config_review_rules",
)

#: Callables of the trusted packages that import, evaluate or unpickle what they are given.
DENIED_CALLABLES = (
    "torch.load",
    "torch.jit.load",
    "torch.ops.load_library",
    "torch.classes.load_library",
    "numpy.load",
    "monai.utils.optional_import",
    "monai.utils.instantiate",
    "monai.utils.module.locate",
    "monai.utils.module.load_submodules",
    "monai.utils.misc.run_cmd",
    "monai.bundle.ConfigParser",
)

_MISSING = object()


def _is_under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _import_trusted(name: str, trusted: tuple[str, ...]) -> object:
    """Import a module of the trusted packages (never the bundle's), or return ``_MISSING``."""
    import importlib

    if root_package(name) not in trusted:
        return _MISSING
    try:
        return importlib.import_module(name)
    except Exception:  # not a module (an attribute), or unimportable: MONAI could not locate it either
        return _MISSING


def _denied_objects(trusted: tuple[str, ...]) -> list[object]:
    return [obj for obj in (_resolve(path, trusted)[-1] for path in DENIED_CALLABLES) if obj is not _MISSING]


def _resolve(dotted: str, trusted: tuple[str, ...]) -> list[object]:
    """The objects each prefix of ``dotted`` names, as ``pydoc.locate`` (MONAI's locator) would find them; a prefix
    that does not resolve ends the list with ``_MISSING``. Only modules of the trusted packages are imported."""
    import types

    parts = dotted.split(".")
    chain = [_import_trusted(parts[0], trusted)]
    for part in parts[1:]:
        current = chain[-1]
        if current is _MISSING:
            break
        found = getattr(current, part, _MISSING)
        if found is _MISSING and isinstance(current, types.ModuleType):
            found = _import_trusted(f"{current.__name__}.{part}", trusted)
        chain.append(found)
    return chain


def path_reason(dotted: str, trusted: tuple[str, ...]) -> str:
    """Why the attribute path ``dotted`` (rooted in a trusted package) reaches something untrusted, or ``""``.

    Every object on the path is judged, not only the first name: a module outside the trusted packages (e.g.
    ``torch.utils.cpp_extension.subprocess``), a module of :data:`DENIED_MODULES`, a callable of
    :data:`DENIED_CALLABLES` or an object defined outside the trusted packages (e.g. ``pydoc.locate`` re-exported by
    ``monai.utils.module``) is listed; a dunder attribute too.
    """
    import types

    parts = dotted.split(".")
    if any(part.startswith("__") for part in parts):
        return f"reads {dotted} (dunder attribute)"
    denied = _denied_objects(trusted)
    for i, obj in enumerate(_resolve(dotted, trusted)):
        prefix = ".".join(parts[: i + 1])
        if obj is _MISSING:
            return ""
        if isinstance(obj, types.ModuleType):
            if root_package(obj.__name__) not in trusted:
                return f"{prefix} is the module {obj.__name__}, outside {'/'.join(trusted)}"
            if _is_under(obj.__name__, DENIED_MODULES):
                return f"{prefix} is the module {obj.__name__}, which loads or runs code"
            continue
        if any(obj is d for d in denied):
            return f"{prefix} imports, evaluates or unpickles what it is given"
        home = (
            getattr(obj, "__module__", None)
            if isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType, types.MethodType))
            else None
        )
        home = home if isinstance(home, str) else type(obj).__module__
        if home == "builtins" and isinstance(obj, (types.BuiltinFunctionType, types.FunctionType)):
            if getattr(obj, "__self__", None) is None or isinstance(obj.__self__, types.ModuleType):
                if obj.__name__ not in SAFE_BUILTINS:
                    return f"{prefix} is the builtin {obj.__name__}"
        elif home and home != "builtins" and root_package(home) not in trusted:
            return f"{prefix} is defined in {home}, outside {'/'.join(trusted)}"
        elif home and _is_under(home, DENIED_MODULES):
            return f"{prefix} comes from {home}, which loads or runs code"
    return ""


def target_path(target: str) -> str:
    """The dotted path MONAI instantiates for a ``_target_`` string (a bare name is looked up in ``monai.*``)."""
    if "." in target:
        return target
    from monai.bundle.config_item import ComponentLocator

    module = ComponentLocator().get_component_module_name(target)
    module = module[0] if isinstance(module, list) else module
    return f"{module}.{target}" if module else target


def root_package(dotted: str) -> str:
    """The top-level package of a dotted name (``torch`` for ``torch.nn.Linear``)."""
    return dotted.split(".", 1)[0]
