"""Measurements: pure functions of (model, data, protocol).

The names below are imported from their modules on first use, so importing one module of the package (such as
``gzoo.metrics.fid``, which compares cached features without torch) does not import torch through the others.
"""

from importlib import import_module
from typing import Any

_MODULE_OF = {
    "psnr": "fidelity", "ssim": "fidelity",
    "Latency": "latency", "measure_interleaved": "latency", "measure_latency": "latency",
    "measure_onnx_latency": "latency",
    "MacCount": "macs", "count_macs": "macs", "count_params": "macs",
}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'gzoo.metrics' has no attribute {name!r}")
    return getattr(import_module(f"gzoo.metrics.{_MODULE_OF[name]}"), name)
