"""Serving never imports the toy's lab (world, prompts, probe, trainer, evaluation)."""

from __future__ import annotations

import json
import subprocess
import sys

SERVING = ["runtime.daemon.daemon", "runtime.pipeline", "runtime.models", "runtime.toy.model"]


def _loaded_after(imports: list[str], extra: str = "") -> set[str]:
    """Module names in sys.modules after importing `imports` in a fresh interpreter."""
    code = "import sys\n" + "".join(f"import {m}\n" for m in imports) + extra + \
        "import json; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_serving_and_the_toy_model_do_not_import_training_or_evaluation():
    # building the toy pipeline (weights loaded, a prompt encoded) is what `longlive serve` does
    loaded = _loaded_after(SERVING, "from runtime.pipeline import load_pipeline\n"
                                    "load_pipeline('toy', max_streams=1).encode_prompt('a red ball rests')\n")
    assert "runtime.toy.model" in loaded and "runtime.toy.vocab" in loaded
    lab = sorted(m for m in loaded if m == "toylab" or m.startswith("toylab."))
    assert lab == [], f"serving imported {lab}"


def test_the_check_sees_a_lab_import():
    """The probe above would catch a serving module that imports the lab."""
    assert "toylab.train" in _loaded_after(["runtime.toy.model", "toylab.train"])
