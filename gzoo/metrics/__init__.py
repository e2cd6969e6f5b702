"""Measurements: pure functions of (model, data, protocol)."""

from gzoo.metrics.fidelity import psnr, ssim
from gzoo.metrics.latency import Latency, measure_interleaved, measure_latency, measure_onnx_latency
from gzoo.metrics.macs import MacCount, count_macs, count_params

__all__ = ["Latency", "MacCount", "count_macs", "count_params", "measure_interleaved", "measure_latency",
           "measure_onnx_latency", "psnr", "ssim"]
