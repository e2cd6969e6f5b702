"""OpenVINO on the CPU: a torch generator converted, checked against eager PyTorch, compiled; NNCF int8.

A model is converted from its ONNX export (torch.onnx, the exporter the ``onnxruntime`` runtime uses) and, where
that export fails, directly from the torch module (``openvino.convert_model``); on the zoo's generators both give
the same graph. Compiled models run in fp32 (``INFERENCE_PRECISION_HINT`` f32: on CPUs with bf16 units OpenVINO
would otherwise lower the precision on its own), one stream, the given number of threads.

int8 is NNCF post-training quantization on calibration inputs. Quantizing the input of an instance norm (OpenVINO's
``MVN``) puts every channel of a pre-norm activation on one scale; channels of small range then lose their detail,
and near the output that shows: the vintagify CycleGAN falls to 15 dB against fp32 with every norm quantized, and
stays above 32 dB with the last two (after the transposed convs) in float. So ``quantize_int8`` keeps the fewest
instance norms in float, counted from the output end (0, 1, 2, 4, ... all), that give ``min_psnr`` against fp32 on
the calibration inputs.
"""

import math
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gzoo.errors import GzooError
from gzoo.metrics.fidelity import psnr
from gzoo.models import value_range

DEPLOY_EXTRA = "pip install 'gzoo[deploy]'"
MIN_PSNR = 30.0  # dB of int8 output against fp32 that quantize_int8 aims for by default
RELATIVE_TOLERANCE = 1e-3  # fp32 exports: max abs difference from eager, as a fraction of the output range
NORM_TYPE = "MVN"  # what OpenVINO makes of an instance norm


def import_openvino():
    try:
        import openvino
    except ImportError:
        raise GzooError(f"OpenVINO is not installed: {DEPLOY_EXTRA}") from None
    return openvino


def import_nncf():
    try:
        import nncf
    except ImportError:
        raise GzooError(f"int8 quantization needs NNCF: {DEPLOY_EXTRA}") from None
    return nncf


def tolerance(model: nn.Module) -> float:
    """The largest max abs difference from eager PyTorch an fp32 export of ``model`` may show."""
    low, high = value_range(model)
    return RELATIVE_TOLERANCE * (high - low)


def max_difference(got: np.ndarray, expected: np.ndarray) -> float:
    """Max abs difference of two outputs; ``inf`` when their shapes differ or either holds NaN."""
    if got.shape != expected.shape:
        return math.inf
    difference = float(np.abs(got.astype(np.float64) - expected.astype(np.float64)).max())
    return math.inf if math.isnan(difference) else difference


def convert(model: nn.Module, example: torch.Tensor, onnx_path: Path | None = None,
            advice: str = "time it with --runtime eager"):
    """``(openvino.Model, how)`` of ``model`` for inputs shaped like ``example``; ``how`` is "onnx" or "torch".

    The ONNX export goes to ``onnx_path`` (a temporary file without it); ``advice`` ends the error of a model that
    converts neither way.
    """
    from gzoo.metrics.onnx import export_onnx

    ov = import_openvino()
    model = model.eval()
    with tempfile.TemporaryDirectory(prefix="gzoo-openvino-") as directory:
        path = onnx_path or Path(directory) / "model.onnx"
        try:
            export_onnx(model, example, path, advice="")
        except GzooError as onnx_error:
            try:
                return ov.convert_model(model, example_input=example), "torch"
            except Exception as err:  # the PyTorch frontend fails in many ways; all mean "not convertible"
                raise GzooError(f"{str(onnx_error).rstrip('; ')}; OpenVINO's PyTorch frontend fails too: "
                                f"{_first_line(err)}; {advice}", exit_code=1) from None
        try:
            return _with_module_names(ov.convert_model(str(path)), path), "onnx"
        except Exception as err:
            raise GzooError(f"OpenVINO cannot read the ONNX export of {type(model).__name__}: {_first_line(err)}",
                            exit_code=1) from None


def compile_model(ov_model, threads: int | None = None):
    """``ov_model`` compiled for this CPU in fp32 (int8 where it holds quantized layers), for latency."""
    ov = import_openvino()
    config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1,
              "INFERENCE_NUM_THREADS": threads or torch.get_num_threads()}
    try:
        return ov.Core().compile_model(ov_model, "CPU", config)
    except Exception as err:
        raise GzooError(f"OpenVINO cannot compile the model for the CPU: {_first_line(err)}", exit_code=1) from None


def run(compiled, inputs: torch.Tensor) -> np.ndarray:
    """The compiled model's outputs on a batch, one input at a time (the models are exported for batch 1)."""
    return np.concatenate([compiled(x[None].numpy())[0] for x in inputs])


def session(model: nn.Module, example: torch.Tensor, threads: int | None = None, int8: bool = False,
            calibration: torch.Tensor | None = None) -> Callable[[], Any]:
    """A compiled OpenVINO model of ``model`` (int8: quantized on ``calibration``), checked, as a zero-argument
    pass on ``example``.

    fp32 must match eager PyTorch on ``example`` within ``tolerance``; int8 is quantized with every layer NNCF
    quantizes by default (no float instance norms), the fastest int8 there is; ``quantize_int8`` is what
    ``gzoo export --int8`` does.
    """
    ov_model, _ = convert(model, example)
    compiled = compile_model(ov_model, threads)
    with torch.inference_mode():
        expected = model(example).numpy()
    difference = max_difference(compiled(example.numpy())[0], expected)
    if not difference <= tolerance(model):
        raise GzooError(f"{type(model).__name__} converted to OpenVINO gives outputs {difference:.2g} away from "
                        f"eager PyTorch's (tolerance {tolerance(model):g}); time it with --runtime eager", exit_code=1)
    if int8:
        if calibration is None:
            raise GzooError("the openvino-int8 runtime needs calibration inputs")
        if example.shape[0] != 1:
            raise GzooError(f"the openvino-int8 runtime times batch 1, not {example.shape[0]}; drop --batch")
        compiled = compile_model(quantize(ov_model, calibration), threads)
    feed = example.numpy()
    return lambda: compiled(feed)


def instance_norms(ov_model) -> list[str]:
    """The friendly names of the model's instance norms (MVN ops), in graph order."""
    return [op.get_friendly_name() for op in ov_model.get_ordered_ops() if op.get_type_name() == NORM_TYPE]


def quantize(ov_model, calibration: torch.Tensor, float_norms: Sequence[str] = ()):
    """NNCF post-training int8 of ``ov_model`` on ``calibration`` (N x C x H x W), leaving ``float_norms``
    (MVN names) unquantized; NNCF's defaults otherwise (CNN model type, performance preset, fast bias
    correction)."""
    nncf = import_nncf()
    dataset = nncf.Dataset([x[None].numpy() for x in calibration])
    ignored = nncf.IgnoredScope(names=list(float_norms)) if float_norms else None
    try:
        with _quiet_nncf(nncf):
            return nncf.quantize(ov_model, dataset, subset_size=len(calibration), ignored_scope=ignored)
    except Exception as err:
        raise GzooError(f"NNCF cannot quantize the model: {_first_line(err)}", exit_code=1) from None


@contextmanager
def _quiet_nncf(nncf) -> Iterator[None]:
    """NNCF logs each ignored node and draws progress bars on stdout, which belongs to `--json`: silence both."""
    import logging

    from nncf.common.logging.logger import nncf_logger

    level = nncf_logger.level
    nncf.set_log_level(logging.ERROR)
    try:
        with open(os.devnull, "w") as devnull, redirect_stdout(devnull):
            yield
    finally:
        nncf.set_log_level(level)


@dataclass
class Int8:
    """The outcome of ``quantize_int8``."""

    model: Any  # the quantized openvino.Model
    psnr: float  # mean dB of int8 outputs against fp32 on the calibration inputs
    psnr_min: float  # the worst image's
    float_norms: list[str]  # module names (MVN names where unknown) of the instance norms left in float
    norms: int  # instance norms in the model
    tried: list[dict] = field(default_factory=list)  # every candidate: float norms and PSNR
    met: bool = True  # whether psnr reached min_psnr


def quantize_int8(ov_model, calibration: torch.Tensor, output_range: float, min_psnr: float = MIN_PSNR,
                  threads: int | None = None, progress: Callable[[str], None] | None = None) -> Int8:
    """Quantize with the fewest instance norms in float, from the output end, that keep ``min_psnr`` dB against
    fp32 on ``calibration``; ``met`` is False (and the best candidate returned) when even all of them in float
    fall short."""
    norms = instance_norms(ov_model)
    reference = torch.from_numpy(run(compile_model(ov_model, threads), calibration))
    best: Int8 | None = None
    tried = []
    for kept in _float_counts(len(norms)):
        if progress:
            progress(f"int8 with {kept} of {len(norms)} instance norms in float")
        floats = norms[len(norms) - kept:]
        quantized = quantize(ov_model, calibration, floats)
        got = torch.from_numpy(run(compile_model(quantized, threads), calibration))
        each = [psnr(got[i:i + 1], reference[i:i + 1], output_range) for i in range(len(got))]
        candidate = Int8(quantized, sum(each) / len(each), min(each), [_module_name(ov_model, n) for n in floats],
                         len(norms), tried, met=sum(each) / len(each) >= min_psnr)
        tried.append({"float_norms": kept, "psnr": candidate.psnr, "psnr_min": candidate.psnr_min})
        if candidate.met:
            return candidate
        if best is None or candidate.psnr > best.psnr:
            best = candidate
    best.met = False
    return best


def runtime_precisions(compiled) -> dict[str, dict[str, int]]:
    """How many layers of each kind OpenVINO's CPU plugin runs in each precision, from its executed graph.

    Only the kinds that hold a generator's arithmetic are listed: Convolution, Deconvolution (transposed convs),
    MVN (instance norms), Interpolate (upsampling), Eltwise and Subgraph (fused element-wise chains).
    """
    counts: Counter = Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        kind, precision = str(info["layerType"].astype(str)), str(info["runtimePrecision"].astype(str))
        if kind in ("Convolution", "Deconvolution", "MVN", "Interpolate", "Eltwise", "Subgraph"):
            counts[kind, precision] += 1
    layers: dict[str, dict[str, int]] = {}
    for (kind, precision), count in sorted(counts.items()):
        layers.setdefault(kind, {})[precision] = count
    return layers


def _float_counts(norms: int) -> list[int]:
    """0, 1, 2, 4, ... and finally ``norms``."""
    counts, kept = [0], 1
    while kept < norms:
        counts.append(kept)
        kept *= 2
    return counts + ([norms] if norms else [])


MODULE_NAME = "gzoo_module"  # rt_info key under which convert() records an MVN's torch module


def _with_module_names(ov_model, onnx_path: Path):
    """Record, on each MVN of a model read from ``onnx_path``, the torch module of its ONNX InstanceNormalization
    (torch.onnx keeps the module path in each node's ``pkg.torch.onnx.name_scopes``).

    The ONNX frontend names ops after ONNX nodes: an MVN is found by the node that feeds the norm (its conv) or by
    the last op of the norm's decomposition (the norm's own name; gone where a unit scale and zero shift fold away).
    """
    import ast

    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    producers = {output: node.name for node in graph.node for output in node.output}
    modules = {}
    for node in graph.node:
        scopes = {p.key: p.value for p in node.metadata_props}.get("pkg.torch.onnx.name_scopes")
        if node.op_type == "InstanceNormalization" and scopes:
            path = ast.literal_eval(scopes)
            module = path[-2] if len(path) > 1 else node.name
            modules[node.name] = module
            modules[f"input of {producers.get(node.input[0])}"] = module
    for op in ov_model.get_ordered_ops():
        if op.get_type_name() != NORM_TYPE:
            continue
        source = op.input(0).get_source_output().get_node().get_friendly_name()
        named = [modules[f"input of {source}"]] if f"input of {source}" in modules else []
        frontier = [op]
        for _ in range(4):
            if named:
                break
            frontier = [t.get_node() for o in frontier for out in o.outputs() for t in out.get_target_inputs()]
            named = [modules[o.get_friendly_name()] for o in frontier if o.get_friendly_name() in modules]
        if named:
            op.get_rt_info()[MODULE_NAME] = named[0]
    return ov_model


def _module_name(ov_model, mvn: str) -> str:
    for op in ov_model.get_ordered_ops():
        if op.get_friendly_name() == mvn and MODULE_NAME in op.get_rt_info():
            return str(op.get_rt_info()[MODULE_NAME].astype(str))
    return mvn


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
