"""The serving graph: the weights file rewritten to float32 with only the output we read."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from removal import modelstore
from removal.pipeline import graph
from removal.pipeline.segment import preprocess
from tests.images import FIXTURES


def small_fp16_model(path, *, weights_as_inputs: bool = False) -> None:
    """ISNet's shape in miniature, as the shipped file stores it: float32 in, Cast to float16,
    Conv/Relu in float16, the main output and a side head each cast back to float32.
    ``weights_as_inputs`` lists the weights as graph inputs too, as files before IR 4 do."""
    rng = np.random.default_rng(7)
    weights = [
        numpy_helper.from_array(rng.normal(0, 0.5, (4, 3, 3, 3)).astype(np.float16), "w1"),
        numpy_helper.from_array(rng.normal(0, 0.5, (4,)).astype(np.float16), "b1"),
        numpy_helper.from_array(rng.normal(0, 0.5, (1, 4, 1, 1)).astype(np.float16), "w_main"),
        numpy_helper.from_array(rng.normal(0, 0.5, (1, 4, 1, 1)).astype(np.float16), "w_side"),
    ]
    nodes = [  # stored out of order, as the shipped file stores its output Casts
        helper.make_node("Cast", ["s1"], ["output"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["input"], ["x16"], to=TensorProto.FLOAT16),
        helper.make_node("Conv", ["x16", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w_main"], ["d1"]),
        helper.make_node("Sigmoid", ["d1"], ["s1"]),
        helper.make_node("Conv", ["r1", "w_side"], ["d2"]),
        helper.make_node("Sigmoid", ["d2"], ["s2"]),
        helper.make_node("Cast", ["s2"], ["side"], to=TensorProto.FLOAT),
    ]
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])]
    if weights_as_inputs:
        inputs += [helper.make_tensor_value_info(w.name, w.data_type, w.dims) for w in weights]
    model = helper.make_model(
        helper.make_graph(
            nodes, "mini", inputs,
            [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, 8, 8]),
             helper.make_tensor_value_info("side", TensorProto.FLOAT, [1, 1, 8, 8])],
            weights,
        ),
        opset_imports=[helper.make_opsetid("", 15)],
    )
    model.ir_version = 8
    onnx.save(model, str(path))


def run(model, tensor: np.ndarray) -> np.ndarray:
    source = str(model) if isinstance(model, os.PathLike) else model
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    return session.run(["output"], {"input": tensor})[0]


def test_build_widens_to_float32_drops_casts_and_keeps_only_the_main_output(tmp_path):
    source = tmp_path / "mini.onnx"
    small_fp16_model(source)

    rewritten = onnx.load_from_string(graph.build(source, "ab" * 32))

    ops = [node.op_type for node in rewritten.graph.node]
    assert ops == ["Conv", "Relu", "Conv", "Sigmoid"]  # no Cast; the side head is gone
    assert [o.name for o in rewritten.graph.output] == ["output"]
    assert {i.name for i in rewritten.graph.initializer} == {"w1", "b1", "w_main"}
    assert {i.data_type for i in rewritten.graph.initializer} == {TensorProto.FLOAT}
    props = {p.key: p.value for p in rewritten.metadata_props}
    assert props == {"quickbg.serving_graph": str(graph.VERSION),
                     "quickbg.source_sha256": "ab" * 32}
    # Same weights, same arithmetic: only the float16 rounding between layers is gone.
    original = onnx.load(str(source))
    w1 = numpy_helper.to_array(next(i for i in original.graph.initializer if i.name == "w1"))
    widened = numpy_helper.to_array(
        next(i for i in rewritten.graph.initializer if i.name == "w1"))
    assert widened.dtype == np.float32 and np.array_equal(widened, w1.astype(np.float32))
    tensor = np.random.default_rng(1).random((1, 3, 8, 8), dtype=np.float32) - 0.5
    assert np.abs(run(rewritten.SerializeToString(), tensor) - run(source, tensor)).max() < 2e-3


def test_the_serving_graph_is_cached_under_the_source_hash_and_rebuilt_for_new_weights(tmp_path):
    source = tmp_path / "mini.onnx"
    small_fp16_model(source)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()

    first = graph.ensure_serving_graph(source)
    assert first == tmp_path / f"mini.serving-{digest[:16]}-v{graph.VERSION}.onnx"
    assert first.stat().st_mode & 0o777 == 0o644
    built_at = first.stat().st_mtime_ns
    assert graph.ensure_serving_graph(source) == first
    assert first.stat().st_mtime_ns == built_at  # reused, not rebuilt

    model = onnx.load(str(source))
    model.graph.initializer[0].raw_data = bytes(len(model.graph.initializer[0].raw_data))
    onnx.save(model, str(source))  # new weights under the same name
    second = graph.ensure_serving_graph(source)

    assert second != first and second.is_file()
    assert first.is_file()  # a worker never deletes: an older worker may still be opening it
    new_digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert graph.remove_stale(source, new_digest) == [first]  # fetch_model's clean-up, and locks
    assert [p.name for p in tmp_path.glob(".*.lock")] == [f".{second.name}.lock"]
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "mini.onnx", second.name]
    assert not list(tmp_path.glob("*.part")) and not list(tmp_path.glob(".*.part"))


@pytest.mark.parametrize(("target", "error"), [
    ("tempfile.mkstemp", OSError(30, "Read-only file system")),  # an unwritable models folder
    ("os.replace", OSError(28, "No space left on device")),  # a write that fails half way
], ids=["read-only", "disk-full"])
def test_a_graph_that_cannot_be_cached_is_served_from_memory_leaving_no_file(
        tmp_path, monkeypatch, target, error):
    source = tmp_path / "mini.onnx"
    small_fp16_model(source)

    def fail(*args, **kwargs):
        raise error

    module, name = target.split(".")
    monkeypatch.setattr(getattr(graph, module), name, fail)
    served = graph.ensure_serving_graph(source)

    assert isinstance(served, bytes)
    assert [o.name for o in onnx.load_from_string(served).graph.output] == ["output"]
    assert not list(tmp_path.glob("*serving*.onnx")) and not list(tmp_path.glob(".*.part"))


def test_a_cached_graph_that_does_not_load_is_rebuilt(tmp_path):
    from removal.pipeline.segment import Segmenter

    source = tmp_path / "mini.onnx"
    small_fp16_model(source)
    cached = graph.ensure_serving_graph(source)
    cached.write_bytes(cached.read_bytes()[:1000])  # cut short

    segmenter = Segmenter(source, 1)

    assert [o.name for o in segmenter.inner.get_outputs()] == ["output"]
    assert onnx.load(str(cached)).graph.output[0].name == "output"  # whole again
    tensor = np.random.default_rng(2).random((1, 3, 8, 8), dtype=np.float32)
    assert np.abs(segmenter.run(tensor) - run(source, tensor)).max() < 2e-3


def test_weights_listed_as_inputs_are_pruned_with_their_head(tmp_path):
    source = tmp_path / "old-style.onnx"
    small_fp16_model(source, weights_as_inputs=True)

    rewritten = graph.build(source)

    assert [i.name for i in onnx.load_from_string(rewritten).graph.input] == [
        "input", "w1", "b1", "w_main"]
    tensor = np.random.default_rng(3).random((1, 3, 8, 8), dtype=np.float32)
    assert np.abs(run(rewritten, tensor) - run(source, tensor)).max() < 2e-3  # only input fed


def test_cast_chains_collapse_and_a_cast_from_integers_targets_float32(tmp_path):
    rng = np.random.default_rng(5)
    weights = [
        numpy_helper.from_array(rng.normal(0, 0.5, (2, 3, 1, 1)).astype(np.float16), "w"),
        numpy_helper.from_array(np.array([3], dtype=np.int64), "k"),
    ]
    nodes = [
        helper.make_node("Cast", ["input"], ["a16"], to=TensorProto.FLOAT16),
        helper.make_node("Cast", ["a16"], ["a32"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["a32"], ["b16"], to=TensorProto.FLOAT16),
        helper.make_node("Conv", ["b16", "w"], ["c"]),
        helper.make_node("Cast", ["k"], ["k16"], to=TensorProto.FLOAT16),
        helper.make_node("Mul", ["c", "k16"], ["m"]),
        helper.make_node("Cast", ["m"], ["output"], to=TensorProto.FLOAT),
    ]
    model = helper.make_model(
        helper.make_graph(
            nodes, "chain",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 4, 4])],
            [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 2, 4, 4])],
            weights,
        ),
        opset_imports=[helper.make_opsetid("", 15)],
    )
    model.ir_version = 8
    source = tmp_path / "chain.onnx"
    onnx.save(model, str(source))

    rewritten = onnx.load_from_string(graph.build(source))

    assert [n.op_type for n in rewritten.graph.node] == ["Conv", "Cast", "Mul"]
    (cast,) = [n for n in rewritten.graph.node if n.op_type == "Cast"]
    assert cast.input[0] == "k" and cast.attribute[0].i == TensorProto.FLOAT
    tensor = np.random.default_rng(6).random((1, 3, 4, 4), dtype=np.float32)
    expected = run(source, tensor)
    assert np.abs(run(rewritten.SerializeToString(), tensor) - expected).max() < 1e-2


def test_a_graph_with_control_flow_is_served_as_shipped(tmp_path, caplog):
    branch = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["y"])], "branch", [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(
        helper.make_graph(
            [helper.make_node("If", ["flag"], ["output"], then_branch=branch,
                              else_branch=branch)],
            "control",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1]),
             helper.make_tensor_value_info("flag", TensorProto.BOOL, [])],
            [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1])],
        ),
        opset_imports=[helper.make_opsetid("", 15)],
    )
    source = tmp_path / "control.onnx"
    onnx.save(model, str(source))

    assert graph.ensure_serving_graph(source) == source

    assert "If has a subgraph" in caplog.text
    assert not list(tmp_path.glob("*serving*.onnx"))


@pytest.mark.model
def test_the_real_serving_graph_predicts_what_the_shipped_file_predicts(segmenter):
    from django.conf import settings

    shipped_path = modelstore.verify(settings.QUICKBG_MODELS_DIR)
    served = segmenter.inner
    assert [o.name for o in served.get_outputs()] == ["output"]
    meta = served.get_modelmeta().custom_metadata_map
    assert meta["quickbg.source_sha256"] == modelstore.MODELS["isnet-general-use"].sha256

    from PIL import Image

    rgb = np.asarray(Image.open(FIXTURES / "animal-2.jpg").convert("RGB"))
    tensor = preprocess(rgb)
    theirs = ort.InferenceSession(str(shipped_path), providers=["CPUExecutionProvider"])
    raw_theirs = theirs.run(["output"], {"input": tensor})[0]
    raw_ours = segmenter.run(tensor)
    assert raw_ours.shape == raw_theirs.shape == (1, 1, 1024, 1024)
    assert np.abs(raw_ours - raw_theirs).max() < 1e-3


def test_a_file_the_rewrite_cannot_read_is_served_as_it_is(tmp_path, caplog):
    source = tmp_path / "odd.onnx"
    source.write_bytes(b"\x08\x07not a protobuf the rewrite understands")

    assert graph.ensure_serving_graph(source) == source

    assert "Cannot build a serving graph from odd.onnx" in caplog.text
    assert not list(tmp_path.glob("*serving*.onnx"))
