"""The graph the worker runs: the shipped ISNet file, rewritten once to run faster on a CPU.

The weights stay the model's; two rewrites remove work, and the only numeric change is that
activations are no longer rounded to float16 between layers:

* **fp16 -> fp32.** The shipped file stores weights and activations in float16. ONNX
  Runtime's CPU provider has no float16 kernels for most of its ops on x86, so it surrounds
  each one with Casts (111 run per inference, ~5 % of it) and breaks its NCHWc layout
  chains (another ~5 % in reorders), only to compute in float32 anyway. Widening the weights
  is exact (every float16 is a float32); the float16 rounding of activations between layers
  goes, which moves the raw output by at most ~3e-5.
* **One output.** The file also returns the side outputs d2..d6 and six intermediate feature
  maps; rembg and we read only ``output`` (d1). Their heads (convs, upsampling to 1024x1024,
  sigmoids, casts) are pruned.

``bench/pipeline.py --arena`` measures the serving graph against ORT's defaults on the shipped
file (figures in ``bench/README.md``); ``tests/pipeline/test_quality.py`` holds the result to
``rembg.remove`` on the shipped file.

The rewrite needs the ``onnx`` package, the reference implementation of the format (the only
library that reads and writes it exactly, with a checker that re-validates the result). It
runs once per weights file: ``fetch_model`` does it after verifying the download, and a worker
that finds it missing does it at start-up, before loading the session (onnx then holds the
model, its float32 weights and the bytes the checker re-reads, about a gigabyte at peak). The
result is cached beside the weights under a name holding the source file's sha256 and the rewrite's
version, so new weights or a new rewrite get a fresh file and a stale one is never used.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from pathlib import Path

from removal.modelstore import sha256_of

logger = logging.getLogger(__name__)

VERSION = 1  # bump when the rewrite changes: cached serving graphs are rebuilt


class UnsupportedGraph(ValueError):
    """The rewrite does not handle this model; it is then run as shipped."""


def serving_path(source: Path, source_sha256: str) -> Path:
    return source.with_name(f"{source.stem}.serving-{source_sha256[:16]}-v{VERSION}.onnx")


def ensure_serving_graph(source: str | os.PathLike) -> Path | bytes:
    """The serving graph for ``source``: its cached file, built first when missing.

    Concurrent workers build it once (a lock file beside it); the file appears atomically, after
    an fsync. Where the models folder is not writable the graph is returned as bytes (ONNX
    Runtime loads either), so a read-only volume costs a rebuild per worker start, not a failure.
    A model the rewrite cannot handle is returned as it is (``source``), with a warning.
    Workers never delete files here; ``remove_stale`` (run by ``fetch_model``) does.
    """
    source = Path(source).resolve()
    source_sha256 = sha256_of(source)
    target = serving_path(source, source_sha256)
    if target.is_file():
        return target
    with _build_lock(target):
        if target.is_file():  # another worker built it while this one waited
            return target
        try:
            data = build(source, source_sha256)
        except Exception as exc:  # a file this rewrite does not understand still runs, slower
            logger.warning("Cannot build a serving graph from %s (%s: %s); running it as shipped.",
                           source.name, type(exc).__name__, exc)
            return source
        return _store(data, target, source)


def discard(path: Path) -> None:
    """Remove a cached serving graph that failed to load, so the next call rebuilds it."""
    with contextlib.suppress(OSError):
        path.unlink()


def remove_stale(source: str | os.PathLike, source_sha256: str) -> list[Path]:
    """Delete serving graphs of ``source`` (whose sha256 the caller has verified) other than the
    current one, and leftovers of builds that died mid-write (older than ten minutes). Returns
    what was removed."""
    source = Path(source).resolve()
    current = serving_path(source, source_sha256)
    removed = []
    folder = source.parent
    candidates = list(folder.glob(f"{source.stem}.serving-*.onnx"))
    locks = [p for p in folder.glob(f".{source.stem}.serving-*.lock")
             if p.name != f".{current.name}.lock"]
    parts = [p for p in folder.glob(f".{source.stem}.serving-*.part") if _age(p) > 600]
    for path in candidates:
        if path != current:
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    for path in locks + parts:
        with contextlib.suppress(OSError):
            path.unlink()
    return removed


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:  # gone meanwhile
        return 0.0


@contextlib.contextmanager
def _build_lock(target: Path):
    import fcntl

    try:
        handle = open(target.with_name(f".{target.name}.lock"), "a")  # noqa: SIM115
    except OSError:  # read-only folder: nothing to cache, nothing to race for
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _store(data: bytes, target: Path, source: Path) -> Path | bytes:
    partial = None
    try:
        fd, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                       suffix=".part")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(partial, 0o644)  # mkstemp's 0600 would hide it from workers of another user
        os.replace(partial, target)
        partial = None
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as exc:
        logger.warning("Cannot cache the serving graph at %s (%s); using it from memory.",
                       target, exc)
        return data
    finally:
        if partial is not None:
            with contextlib.suppress(OSError):
                os.unlink(partial)
    logger.info("Built the serving graph %s from %s.", target.name, source.name)
    return target


def build(source: Path, source_sha256: str = "") -> bytes:
    """Rewrite the model at ``source`` (see the module docstring); returns the new file's bytes.

    Raises ``UnsupportedGraph`` (or the checker's error) for a model it cannot rewrite safely.
    """
    import onnx

    model = onnx.load(str(source))
    graph = model.graph
    for node in graph.node:
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
               for a in node.attribute):
            raise UnsupportedGraph(f"{node.op_type} has a subgraph; control flow is not handled")
    types = _value_types(model)
    kept_output = graph.output[0].name

    _widen_initializers(graph)
    alias = _drop_float_casts(graph, types)
    _rename_outputs_through(graph, alias)
    _keep_only_output(graph, kept_output)
    del graph.value_info[:]
    for value in list(graph.input) + list(graph.output):
        if value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16:
            value.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    props = {p.key: p.value for p in model.metadata_props}
    props.update({"quickbg.serving_graph": str(VERSION), "quickbg.source_sha256": source_sha256})
    onnx.helper.set_model_props(model, props)
    data = model.SerializeToString()
    del model, graph
    onnx.checker.check_model(data, full_check=True)  # types, shapes and references, re-derived
    return data


def _value_types(model) -> dict[str, int]:
    """Element type of every tensor, by shape inference on a copy without the weights' data
    (a copy with them would double the rewrite's memory)."""
    import onnx

    skeleton = onnx.ModelProto()
    skeleton.ir_version = model.ir_version
    skeleton.opset_import.extend(model.opset_import)
    skeleton.graph.node.extend(_sorted(model.graph.node))  # inference reads nodes in order
    skeleton.graph.value_info.extend(model.graph.value_info)
    skeleton.graph.input.extend(model.graph.input)
    skeleton.graph.output.extend(model.graph.output)
    listed = {value.name for value in model.graph.input}
    for init in model.graph.initializer:  # weights as typed inputs: same types, no data
        if init.name not in listed:
            skeleton.graph.input.append(
                onnx.helper.make_tensor_value_info(init.name, init.data_type, init.dims))
    inferred = onnx.shape_inference.infer_shapes(skeleton).graph
    types = {v.name: v.type.tensor_type.elem_type
             for v in list(inferred.value_info) + list(inferred.input) + list(inferred.output)}
    types.update({i.name: i.data_type for i in model.graph.initializer})
    return types


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


def _drop_float_casts(graph, types: dict[str, int]) -> dict[str, str]:
    """Remove Casts between float16 and float32 (any chain of them); a Cast from another type
    to float16 now casts to float32. Returns {removed Cast's output: the tensor it stood for}."""
    import onnx

    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16}
    alias: dict[str, str] = {}
    kept = []
    for node in graph.node:
        cast = node.op_type == "Cast" and node.domain in ("", "ai.onnx")
        to = next((a for a in node.attribute if a.name == "to"), None) if cast else None
        if cast and to.i in floats and types.get(node.input[0]) in floats:
            alias[node.output[0]] = node.input[0]
            continue
        if cast and to.i == onnx.TensorProto.FLOAT16:
            to.i = onnx.TensorProto.FLOAT
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
    """A graph output that was a Cast's result takes over the name of what the Cast read."""
    produced = {name for node in graph.node for name in node.output}
    for output in graph.output:
        source = alias.get(output.name)
        if source is None:
            continue
        if source not in produced:
            raise UnsupportedGraph(f"graph output {output.name} is a cast of an input or weight")
        if any(other.name == source for other in graph.output):
            raise UnsupportedGraph(f"graph output {output.name} is a cast of another output")
        for node in graph.node:
            for i, name in enumerate(node.output):
                if name == source:
                    node.output[i] = output.name
            for i, name in enumerate(node.input):
                if name == source:
                    node.input[i] = output.name


def _keep_only_output(graph, name: str) -> None:
    """Drop every other graph output and whatever only they needed (nodes, initializers, and
    the graph inputs that old files list for their initializers)."""
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
    nodes = _sorted([node for index, node in enumerate(graph.node) if index in live])
    del graph.node[:]
    graph.node.extend(nodes)
    pruned = {init.name for init in graph.initializer if init.name not in needed}
    initializers = [init for init in graph.initializer if init.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    inputs = [value for value in graph.input if value.name not in pruned]
    del graph.input[:]
    graph.input.extend(inputs)


def _sorted(nodes) -> list:
    """Nodes in an order where each comes after the producers of its inputs. Files need not be
    stored that way (the shipped ISNet file lists its output Casts first); the checker needs it.
    """
    nodes = list(nodes)
    producer = {out: index for index, node in enumerate(nodes) for out in node.output}
    order, state = [], {}  # state: 1 visiting, 2 done

    def visit(index: int) -> None:
        stack = [(index, iter(nodes[index].input))]
        state[index] = 1
        while stack:
            current, inputs = stack[-1]
            for name in inputs:
                dep = producer.get(name)
                if dep is None or state.get(dep) == 2:
                    continue
                if state.get(dep) == 1:
                    raise UnsupportedGraph(f"the graph has a cycle through {name}")
                state[dep] = 1
                stack.append((dep, iter(nodes[dep].input)))
                break
            else:
                stack.pop()
                state[current] = 2
                order.append(nodes[current])

    for index in range(len(nodes)):
        if state.get(index) != 2:
            visit(index)
    return order
