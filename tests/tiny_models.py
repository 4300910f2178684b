"""Tiny ONNX models, one per pre/post-processing family, built by the tests themselves.

Each is a few KB: a 1x1 convolution over the three colour channels (so a bright subject on a
dark background gives a bright mask), built with the ``onnx`` package's helper and written
deterministically. ``build_catalogue(folder)`` writes the files plus the extra-catalogue JSON
(``QUICKBG_EXTRA_MODELS``, see ``removal.modelextra.load_extra``) holding their sha256, so the
tests install them with ``fetch_model --model NAME --from-file PATH`` like any air-gapped model:

* ``tiny-u2net``: rembg's ``u2net`` session, 320 px, seven outputs (d0..d6) like U²-Net;
* ``tiny-isnet``: QuickBG's serving-graph path, 1024 px, one sigmoid output like ISNet;
* ``tiny-birefnet``: rembg's ``birefnet-general`` session, 1024 px, a logit output (rembg
  applies the sigmoid) and an INVERTED weight: its mask is the dark part of the image, so a
  result shows which model ran.

Plain Python (no Django): ``tests/settings.py`` calls it before the settings load.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

TINY = {
    # name: (engine, rembg session, input size, outputs, weight sign, sigmoid in the graph)
    "tiny-u2net": ("rembg", "u2net", 320, 7, 1.0, True),
    "tiny-isnet": ("serving-graph", "", 1024, 1, 1.0, True),
    "tiny-birefnet": ("rembg", "birefnet-general", 1024, 1, -1.0, False),
}


def build(name: str) -> bytes:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    _, _, size, outputs, sign, sigmoid = TINY[name]
    weight = numpy_helper.from_array(np.full((1, 3, 1, 1), sign * 4.0, np.float32), "w")
    bias = numpy_helper.from_array(np.zeros((1,), np.float32), "b")
    nodes = [helper.make_node("Conv", ["input", "w", "b"], ["logit"])]
    names = []
    for index in range(outputs):
        out = "output" if outputs == 1 else f"d{index}"
        nodes.append(helper.make_node("Sigmoid" if sigmoid else "Identity", ["logit"], [out]))
        names.append(out)
    graph = helper.make_graph(
        nodes, name.replace("-", "_"),
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 1, size, size]) for n in names],
        initializer=[weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="quickbg-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def build_catalogue(folder: str | Path) -> Path:
    """Write each tiny model as ``<folder>/<name>.onnx`` and the catalogue JSON; return its path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, (engine, session, size, *_rest) in TINY.items():
        data = build(name)
        (folder / f"{name}.onnx").write_bytes(data)
        entry = {"name": name, "engine": engine, "input_size": size,
                 "purpose": f"Test model ({engine}, {size} px)", "licence": "test only",
                 "memory_mb": 1, "checksum": "sha256:" + hashlib.sha256(data).hexdigest()}
        if session:
            entry["session"] = session
        entries.append(entry)
    path = folder / "extra-models.json"
    path.write_text(json.dumps(entries, indent=2))
    return path
