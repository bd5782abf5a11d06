"""Sweep fixtures shared by the experiment tests: a hand-built model whose evaluation is
exact, and a config writer around it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import torch

from memsim.spec.training import parse_training
from memsim.workloads.data import load_dataset
from memsim.workloads.training import CHECKPOINT_FORMAT, build_model_for

# -- a hand-built model whose evaluation is exact -------------------------------------------
#
# A BNN with +-1 weights and activations, batch norm at identity and output scale 1: the first
# layer's float sums only decide signs, and every logit is an integer sum, so accuracy and
# margins do not depend on the CPU's summation order, which keeps the golden aggregates
# portable.


def golden_checkpoint_file(path: Path, seed: int = 111) -> Path:
    """A BNN checkpoint with random +-1 weights drawn with `seed` (111: the golden one)."""
    spec = parse_training({
        "schema_version": 1, "name": "golden", "seed": 0, "data": {"name": "digits"},
        "model": {"name": "mlp", "weight_bits": 1, "binary_activations": True,
                  "options": {"width_multiplier": 0.0625}},
        "epochs": 1})
    model = build_model_for(spec, load_dataset("digits"))
    rng = np.random.default_rng(seed)  # 111: of seeds 0..199, the best here (23 %)
    state = {}
    for name, t in model.state_dict().items():
        if name.endswith("weight") and t.dim() == 2:
            values = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=tuple(t.shape))
            state[name] = torch.from_numpy(values)
        elif name.endswith("running_var") or name == "scale.scale" or (
                name.endswith("weight") and t.dim() == 1):  # batch norm at identity, scale 1
            state[name] = torch.ones_like(t)
        else:
            state[name] = torch.zeros_like(t)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": CHECKPOINT_FORMAT, "config": spec.to_dict(), "epoch": 1,
                "complete": True, "model_state": state, "history": []}, path)
    return path


STORAGE_VARIANTS = """\
placements:
  - name: all
  - name: edges
    fixed:
      - {name: sram, device: sram-14nm, layers: [first, last], knobs: {v_rel: 1.0}}
protections:
  - name: none
  - name: ecc
    ecc: secded-72-64
"""
"""Two placements (all in the device under test; first and last layers in nominal SRAM) and
two protections (none; SEC-DED), as a config's YAML."""


def sweep_config(tmp: Path, checkpoint: Path, body: str, name: str = "exp.yaml") -> Path:
    text = textwrap.dedent(f"""\
        schema_version: 1
        name: test-sweep
        seed: 11
        data: {{name: digits, test_images: 60}}
        models:
          - {{name: a, checkpoint: {checkpoint}}}
        """) + textwrap.dedent(body)
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return path


REPO_DEMO = Path(__file__).resolve().parents[1] / "memsim-demo"
"""Where the README's first Quickstart line writes the demo (CI runs it before the tests)."""


def fresh_repo_demo() -> Path | None:
    """The repository's `memsim-demo/` when this code wrote it (its manifest newer than every
    source file of memsim: CI's demo, run right before the tests), else None."""
    manifest = REPO_DEMO / "manifest.json"
    if not manifest.is_file() or not (REPO_DEMO / "report.html").is_file():
        return None
    sources = REPO_DEMO.parent / "memsim"
    newest = max(p.stat().st_mtime for p in sources.rglob("*")
                 if p.is_file() and "__pycache__" not in p.parts)
    return REPO_DEMO if manifest.stat().st_mtime > newest else None
