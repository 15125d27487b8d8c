"""Small sweep files on scikit-learn's digits, shared by the tests of the sweeps."""

from __future__ import annotations

from pathlib import Path

BASE = """
[base]
dataset = "digits"
augment = "digits"
encoder_width = 4
projector_hidden = [16]
log_every = 1
monitor_size = 64
threads = 1  # one thread: many times faster than two on busy shared cores
"""

DOUBLE_DESCENT = (
    """
kind = "double-descent"
ppe_last = 2
"""
    + BASE
    + """
[budget]
max_steps = 2
[grid]
P = [16, 32]
D = [16, 32]
[theory]
trials = 4
"""
)

SCALING = (
    """
kind = "scaling"
ppe_last = 2
"""
    + BASE
    + """
[point]
steps = 2
batch_size = 16
projector_dim = 8
num_views = 2
[axes]
steps = [2, 3]
batch_size = [16, 32]
projector_dim = [8, 16]
"""
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path
