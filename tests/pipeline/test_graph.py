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


def small_fp16_model(path) -> None:
    """ISNet's shape in miniature, as the shipped file stores it: float32 in, Cast to float16,
    Conv/Relu in float16, the main output and a side head each cast back to float32."""
    rng = np.random.default_rng(7)
    weights = [
        numpy_helper.from_array(rng.normal(0, 0.5, (4, 3, 3, 3)).astype(np.float16), "w1"),
        numpy_helper.from_array(rng.normal(0, 0.5, (4,)).astype(np.float16), "b1"),
        numpy_helper.from_array(rng.normal(0, 0.5, (1, 4, 1, 1)).astype(np.float16), "w_main"),
        numpy_helper.from_array(rng.normal(0, 0.5, (1, 4, 1, 1)).astype(np.float16), "w_side"),
    ]
    nodes = [
        helper.make_node("Cast", ["input"], ["x16"], to=TensorProto.FLOAT16),
        helper.make_node("Conv", ["x16", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w_main"], ["d1"]),
        helper.make_node("Sigmoid", ["d1"], ["s1"]),
        helper.make_node("Cast", ["s1"], ["output"], to=TensorProto.FLOAT),
        helper.make_node("Conv", ["r1", "w_side"], ["d2"]),
        helper.make_node("Sigmoid", ["d2"], ["s2"]),
        helper.make_node("Cast", ["s2"], ["side"], to=TensorProto.FLOAT),
    ]
    model = helper.make_model(
        helper.make_graph(
            nodes, "mini",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
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
    assert not first.exists()  # the stale graph is removed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mini.onnx", second.name]


def test_an_unwritable_models_folder_gets_the_graph_in_memory(tmp_path, monkeypatch):
    source = tmp_path / "mini.onnx"
    small_fp16_model(source)

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(graph.tempfile, "mkstemp", read_only)
    served = graph.ensure_serving_graph(source)

    assert isinstance(served, bytes)
    assert [o.name for o in onnx.load_from_string(served).graph.output] == ["output"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mini.onnx"]


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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd.onnx"]
