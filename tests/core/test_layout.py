"""The package's layout: the core imports without TensorFlow, and no module imports in a cycle."""

import ast
import os
import subprocess
import sys

import keras
import pytest

from tests.processes import HANG, ROOT

PACKAGE = ROOT / "glow_tf"
# The backend-agnostic core, and what else must load where TensorFlow is
# missing (a run's config and weights, the pictures and scores).
WITHOUT_TENSORFLOW = [
    "glow_tf", "glow_tf.config", "glow_tf.datasets", "glow_tf.model", "glow_tf.flow",
    "glow_tf.layers", "glow_tf.sampling",
    "glow_tf.quantization", "glow_tf.checks", "glow_tf.precision", "glow_tf.runs",
    "glow_tf.analysis.pictures", "glow_tf.analysis.scores",
]

BLOCK_TENSORFLOW = """
import importlib.abc, sys

class NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith(("tensorflow.", "tensorflow_")):
            raise ImportError(f"{name} is blocked: the core must import without TensorFlow")
        return None

sys.meta_path.insert(0, NoTensorFlow())
"""


@pytest.mark.slow
@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="starts its own process; run once, from the TensorFlow run")
def test_the_core_imports_and_runs_with_tensorflow_blocked():
    pytest.importorskip("jax", reason="JAX is not installed (requirements-dev.txt has it)")
    script = BLOCK_TENSORFLOW + f"""
import importlib
for name in {WITHOUT_TENSORFLOW!r}:
    importlib.import_module(name)
import glow_tf, numpy as np
model = glow_tf.Glow(glow_tf.GlowConfig(image_shape=(8, 8, 1), k_glow=2, l_glow=2,
                                        hidden_channels=8, n_bits=4, seed=0))
images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 1), dtype=np.uint8)
model.initialize(images)
print("bits/dim", np.asarray(model.bits_per_dim(images, seed=0)).mean())
print("tensorflow loaded:", any(m.startswith("tensorflow") for m in sys.modules))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=HANG,
        env={**os.environ, "KERAS_BACKEND": "jax"},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "tensorflow loaded: False" in result.stdout, result.stdout
    assert "bits/dim" in result.stdout


def module_name(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_imports(path, modules):
    """The glow_tf modules that `path` imports when it is imported (not inside functions)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        statements = [node]
        if isinstance(node, (ast.If, ast.Try)):  # module-level conditional imports
            statements = list(ast.walk(node))
        for statement in statements:
            if isinstance(statement, ast.Import):
                found |= {alias.name for alias in statement.names}
            elif isinstance(statement, ast.ImportFrom) and statement.module:
                for alias in statement.names:
                    child = f"{statement.module}.{alias.name}"
                    found.add(child if child in modules else statement.module)
    return {name for name in found if name in modules}


def test_no_import_cycles():
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(path): path for path in paths}
    graph = {name: module_imports(path, modules) for name, path in modules.items()}

    def cycle_from(name, stack, done):
        if name in stack:
            return stack[stack.index(name):] + [name]
        if name in done:
            return None
        for child in sorted(graph[name]):
            found = cycle_from(child, stack + [name], done)
            if found:
                return found
        done.add(name)
        return None

    done = set()
    for name in sorted(graph):
        cycle = cycle_from(name, [], done)
        assert cycle is None, "import cycle: " + " -> ".join(cycle)
    # The check sees the imports: the model imports its flow, the flow its layers.
    assert "glow_tf.flow" in graph["glow_tf.model"]
    assert "glow_tf.layers" in graph["glow_tf.flow"]


def test_tensorflow_only_modules_live_under_glow_tf_tf():
    """A module outside glow_tf/tf/ imports TensorFlow only inside a function, if at all."""
    for path in sorted(PACKAGE.rglob("*.py")):
        if "tf" in path.relative_to(PACKAGE).parts[:-1]:
            continue
        top_level = {
            alias.name.split(".")[0]
            for node in ast.parse(path.read_text()).body
            if isinstance(node, (ast.Import, ast.ImportFrom))
            for alias in (node.names if isinstance(node, ast.Import)
                          else [ast.alias(node.module or "")])
        }
        assert not top_level & {"tensorflow", "tensorflow_datasets", "tensorflow_probability"}, path
