"""A griffe extension for the API reference: the docstrings streamgmm completes at import.

A class decorated with ``streamgmm.regime.params.documented`` gets its ``Parameters`` section
when it is defined, made from the declarations of its settings, so the docstring in its source
has none, and its constructor is made by ``dataclasses`` from fields whose defaults are calls of
``setting``. For such a class the reference takes the docstring and the constructor's signature
of the imported class.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import griffe


def _documented(obj: griffe.Object) -> list[griffe.Class]:
    """The classes under ``obj`` decorated with ``documented``."""
    found = []
    for member in obj.members.values():
        if member.is_alias or not (member.is_module or member.is_class):
            continue
        if isinstance(member, griffe.Class) and any(
            str(d.value).split(".")[-1] == "documented" for d in member.decorators
        ):
            found.append(member)
        found += _documented(member)  # type: ignore[arg-type]
    return found


def _parameter(param: inspect.Parameter) -> griffe.Parameter:
    empty = inspect.Parameter.empty
    return griffe.Parameter(
        param.name,
        annotation=None if param.annotation is empty else str(param.annotation),
        kind=griffe.ParameterKind(param.kind.description),
        default=None if param.default is empty else repr(param.default),
    )


class RuntimeDocstrings(griffe.Extension):
    """Docstrings and constructors of the classes decorated with ``documented``, read from the
    imported classes."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        for cls in _documented(pkg):
            runtime = getattr(importlib.import_module(cls.module.path), cls.name)
            doc = inspect.getdoc(runtime) or ""
            if cls.docstring is None:
                cls.docstring = griffe.Docstring(doc, parent=cls)
            else:
                cls.docstring.value = doc
            signature = inspect.signature(runtime)
            init = griffe.Function(
                "__init__",
                parent=cls,
                parameters=griffe.Parameters(*map(_parameter, signature.parameters.values())),
                returns="None",
            )
            cls.set_member("__init__", init)
