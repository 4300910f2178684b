"""The graph the worker runs: the shipped ISNet file, rewritten once to run faster on a CPU.

The weights and the arithmetic stay the model's; two exact rewrites remove work:

* **fp16 -> fp32.** The shipped file stores weights and activations in float16. ONNX
  Runtime's CPU provider has no float16 kernels for most of its ops on x86, so it surrounds
  each one with Casts (111 run per inference, ~5 % of it) and breaks its NCHWc layout
  chains (another ~5 % in reorders), only to compute in float32 anyway. Widening the weights
  is exact (every float16 is a float32); the float16 rounding of activations between layers
  goes, which moves the raw output by at most ~3e-5.
* **One output.** The file also returns the side outputs d2..d6 and six intermediate feature
  maps; rembg and we read only ``output`` (d1). Their heads (convs, upsampling to 1024x1024,
  sigmoids, casts) are pruned.

Measured on a 2-core machine, one process, interleaved runs (``bench/pipeline.py`` prints the
same comparison): the shipped file with ORT's defaults 4.88 s per 1024x1024 inference, the
serving graph with our options 4.54 s; peak RSS of a worker on a 4096x4096 JPEG 965 MB ->
957 MB, with the memory arena now on (``segment.session_options``).

The rewrite needs the ``onnx`` package, the reference implementation of the format (the only
library that reads and writes it exactly, with a checker that re-validates the result). It
runs once per weights file: ``fetch_model`` does it after verifying the download, and a worker
that finds it missing does it at start-up (a few seconds). The result is cached beside the
weights under a name holding the source file's sha256 and the rewrite's version, so new
weights or a new rewrite get a fresh file and a stale one is never used.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from removal.modelstore import sha256_of

logger = logging.getLogger(__name__)

VERSION = 1  # bump when the rewrite changes: cached serving graphs are rebuilt


def serving_path(source: Path, source_sha256: str) -> Path:
    return source.with_name(f"{source.stem}.serving-{source_sha256[:16]}-v{VERSION}.onnx")


def ensure_serving_graph(source: str | os.PathLike) -> Path | bytes:
    """The serving graph for ``source``: its cached file, built first when missing.

    Where the models folder is not writable the graph is returned as bytes (ONNX Runtime loads
    either), so a read-only volume costs a rebuild per worker start, not a failure. A model the
    rewrite cannot handle is returned as it is (``source``), with a warning in the log.
    """
    source = Path(source).resolve()
    source_sha256 = sha256_of(source)
    target = serving_path(source, source_sha256)
    if target.is_file():
        return target
    try:
        data = build(source, source_sha256)
    except Exception as exc:  # a file this rewrite does not understand still runs, just slower
        logger.warning("Cannot build a serving graph from %s (%s: %s); running it as shipped.",
                       source.name, type(exc).__name__, exc)
        return source
    try:
        fd, partial = tempfile.mkstemp(dir=source.parent, prefix=f".{target.name}.")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(partial, 0o644)  # mkstemp's 0600 would hide it from workers of another user
        os.replace(partial, target)  # atomic: concurrent builders write the same bytes
    except OSError as exc:
        logger.warning("Cannot cache the serving graph at %s (%s); using it from memory.",
                       target, exc)
        return data
    for stale in source.parent.glob(f"{source.stem}.serving-*.onnx"):
        if stale != target:
            stale.unlink(missing_ok=True)
    logger.info("Built the serving graph %s from %s.", target.name, source.name)
    return target


def build(source: Path, source_sha256: str = "") -> bytes:
    """Rewrite the model at ``source`` (see the module docstring); returns the new file's bytes."""
    import onnx

    model = onnx.load(str(source))
    typed = onnx.shape_inference.infer_shapes(model)
    graph = model.graph
    kept_output = graph.output[0].name
    float_types = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16}
    types = {v.name: v.type.tensor_type.elem_type
             for v in list(typed.graph.value_info) + list(graph.input) + list(graph.output)}
    types.update({i.name: i.data_type for i in graph.initializer})

    _widen_initializers(graph)
    alias = _drop_float_casts(graph, types, float_types)
    _rename_outputs_through(graph, alias)
    _keep_only_output(graph, kept_output)
    del graph.value_info[:]
    for value in list(graph.input) + list(graph.output):
        if value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16:
            value.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    onnx.helper.set_model_props(model, {
        "quickbg.serving_graph": str(VERSION),
        "quickbg.source_sha256": source_sha256,
    })
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def _widen_initializers(graph) -> None:
    import numpy as np
    import onnx
    from onnx import numpy_helper

    for init in graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT16:
            init.CopyFrom(numpy_helper.from_array(
                numpy_helper.to_array(init).astype(np.float32), init.name))
    for node in graph.node:
        for attr in node.attribute:
            tensor = attr.type == onnx.AttributeProto.TENSOR
            if tensor and attr.t.data_type == onnx.TensorProto.FLOAT16:
                attr.t.CopyFrom(numpy_helper.from_array(
                    numpy_helper.to_array(attr.t).astype(np.float32), attr.t.name))


def _drop_float_casts(graph, types: dict, float_types: set) -> dict[str, str]:
    """Remove Casts between float16 and float32; returns {removed output: its source}."""
    alias: dict[str, str] = {}
    kept = []
    for node in graph.node:
        target = next((a.i for a in node.attribute if a.name == "to"), None)
        floats = target in float_types and types.get(node.input[0]) in float_types
        if node.op_type == "Cast" and floats:
            alias[node.output[0]] = node.input[0]
        else:
            kept.append(node)

    def resolve(name: str) -> str:
        while name in alias:
            name = alias[name]
        return name

    alias = {name: resolve(name) for name in alias}
    for node in kept:
        for i, name in enumerate(node.input):
            node.input[i] = alias.get(name, name)
    del graph.node[:]
    graph.node.extend(kept)
    return alias


def _rename_outputs_through(graph, alias: dict[str, str]) -> None:
    """A graph output that was a Cast's result takes over the name of the Cast's source."""
    graph_inputs = {value.name for value in graph.input}
    for output in graph.output:
        source = alias.get(output.name)
        if source is None:
            continue
        if source in graph_inputs:
            raise ValueError(f"Graph output {output.name} is a cast of an input; not supported.")
        for node in graph.node:
            for i, name in enumerate(node.output):
                if name == source:
                    node.output[i] = output.name
            for i, name in enumerate(node.input):
                if name == source:
                    node.input[i] = output.name


def _keep_only_output(graph, name: str) -> None:
    """Drop every other graph output and whatever only they needed (nodes, initializers)."""
    kept_outputs = [value for value in graph.output if value.name == name]
    del graph.output[:]
    graph.output.extend(kept_outputs)
    producers = {out: index for index, node in enumerate(graph.node) for out in node.output}
    needed, live, pending = set(), set(), [name]
    while pending:
        tensor = pending.pop()
        if tensor in needed:
            continue
        needed.add(tensor)
        index = producers.get(tensor)
        if index is not None and index not in live:
            live.add(index)
            pending.extend(graph.node[index].input)
    nodes = [node for index, node in enumerate(graph.node) if index in live]
    del graph.node[:]
    graph.node.extend(nodes)
    initializers = [init for init in graph.initializer if init.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
