"""Every public class documents its parameters and carries an example that actually runs."""

import importlib
import inspect
import pkgutil
import re
import textwrap

import pytest

import dream_envs
import sb3_plugins


def _public_classes() -> list[type]:
    """Classes named in the ``__all__`` of every module of both packages (each class once)."""
    found: dict[str, type] = {}
    for package in (dream_envs, sb3_plugins):
        modules = [package] + [
            importlib.import_module(info.name)
            for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
        ]
        for module in modules:
            for name in getattr(module, "__all__", []):
                value = getattr(module, name)
                if inspect.isclass(value) and value.__module__.startswith(package.__name__):
                    found[f"{value.__module__}.{value.__qualname__}"] = value
    return list(found.values())


PUBLIC_CLASSES = _public_classes()


def example_of(cls) -> str:
    doc = inspect.getdoc(cls) or ""
    match = re.search(r"Example::\n\n(.*?)(?:\n\S|\Z)", doc, re.S)
    return textwrap.dedent(match.group(1)) if match else ""


@pytest.mark.parametrize("cls", PUBLIC_CLASSES, ids=lambda c: c.__name__)
def test_public_class_has_params_and_a_runnable_example(cls):
    doc = inspect.getdoc(cls)
    assert doc, f"{cls.__name__} has no docstring"
    own_init = "__init__" in vars(cls) and len(inspect.signature(cls).parameters) > 0
    if own_init:
        for name in inspect.signature(cls).parameters:
            assert f":param {name}:" in doc, f"{cls.__name__} does not document parameter {name!r}"
    code = example_of(cls)
    assert code, f"{cls.__name__} has no 'Example::' block"
    exec(compile(code, f"<example of {cls.__name__}>", "exec"), {})
