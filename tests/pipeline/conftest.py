"""Fixtures for the pipeline's unit tests: images built in memory, and the real model."""

from __future__ import annotations

import numpy as np

from removal.pipeline.segment import INPUT_SIZE


class DiscModel:
    """Stands in for ISNet where a test is about the code around the model: its raw output is a
    disc (value 1.0) on 0.0, centred at ``centre`` (fractions of the frame), radius ``radius``."""

    def __init__(self, centre=(0.5, 0.5), radius=0.25, empty=False):
        yy, xx = np.mgrid[0:INPUT_SIZE, 0:INPUT_SIZE].astype(np.float32) / INPUT_SIZE
        disc = (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= radius**2
        self.output = np.zeros((1, 1, INPUT_SIZE, INPUT_SIZE), dtype=np.float32)
        if not empty:
            self.output[0, 0][disc] = 1.0
        self.inputs: list[np.ndarray] = []

    def run(self, tensor: np.ndarray, timeout: float | None = None) -> np.ndarray:
        self.inputs.append(tensor)
        return self.output.copy()
