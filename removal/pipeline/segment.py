"""ISNet segmentation through rembg's session on ONNX Runtime.

One ``Segmenter`` per process (``get_segmenter``), created lazily on first use: ONNX Runtime's
thread pools do not survive ``fork()``, so it must be created in the process that runs jobs.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
from PIL import Image

INPUT_SIZE = 1024


class Segmenter:
    def __init__(self, model_path: str | os.PathLike, threads: int = 0):
        import onnxruntime as ort

        path = Path(model_path).resolve()
        # rembg only loads custom models from under its home folder.
        os.environ["U2NET_HOME"] = str(path.parent)
        from rembg import new_session

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = new_session(
            "dis_custom", model_path=str(path), sess_opts=opts, providers=["CPUExecutionProvider"]
        )
        self.inner = self.session.inner_session
        self.input_name = self.inner.get_inputs()[0].name
        self.model_path = path

    def mask(self, image: Image.Image) -> Image.Image:
        """Return the foreground mask (mode ``L``, same size as ``image``)."""
        return self.session.predict(image)[0]


_lock = threading.Lock()
_segmenters: dict[tuple[str, int], Segmenter] = {}


def get_segmenter(model_path: str | os.PathLike, threads: int = 0) -> Segmenter:
    """The process-wide segmenter for this model file, created on first call."""
    key = (str(model_path), threads)
    with _lock:
        if key not in _segmenters:
            _segmenters[key] = Segmenter(model_path, threads)
        return _segmenters[key]


def mask_array(mask: Image.Image) -> np.ndarray:
    return np.asarray(mask, dtype=np.uint8)
