"""Load a Lambda module from lambdas/<name>/app.py under a unique module name."""

from __future__ import annotations

import importlib.util

from tests.infra import synth


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"lambda_{name}_app", synth.REPO / "lambdas" / name / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
