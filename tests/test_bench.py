"""Latency in eager PyTorch and ONNX Runtime, and `gzoo bench`: behaviour only, never how fast."""

import json
import math
import sys

import numpy as np
import pytest
import torch
from photos import photo

from gzoo import api
from gzoo.data.modeldir import save_model_dir
from gzoo.errors import GzooError
from gzoo.metrics import measure_interleaved, measure_onnx_latency
from gzoo.metrics.latency import onnx_session
from gzoo.models import create_model


def tiny_generator(ngf: int = 4) -> torch.nn.Module:
    return create_model("resnet_generator", ngf=ngf, n_blocks=1).eval()


def test_onnx_export_equals_eager_on_a_photo():
    """The GAN Compression horse2zebra student's architecture: depthwise-separable convs, transposed convs."""
    model = create_model("sub_mobile_resnet_generator", config="16_16_32_16_32_32_16_16").eval()
    image = photo(128)
    session = onnx_session(model, image, threads=1)
    got = session.run(None, {session.get_inputs()[0].name: image.numpy()})[0]
    with torch.inference_mode():
        expected = model(image).numpy()
    assert got.shape == expected.shape == (1, 3, 128, 128)
    assert expected.std() > 0.01  # a picture came out, not a flat image
    assert np.abs(got - expected).max() < 1e-4


def test_onnx_latency_reports_its_protocol():
    images = photo(32).repeat(2, 1, 1, 1)
    latency = measure_onnx_latency(tiny_generator(), images, warmup=1, runs=4, min_runs=4, threads=1)
    assert (latency.runs, latency.warmup, latency.threads, latency.batch) == (4, 1, 1, 2)
    assert (latency.runtime, latency.device) == ("onnxruntime", "cpu")
    assert 0 < latency.median_ms < math.inf and latency.iqr_ms >= 0
    assert latency.peak_memory_mb is not None and latency.peak_memory_mb >= 0  # Linux: read from /proc


def test_an_onnx_output_off_eager_is_an_error_not_a_number():
    with pytest.raises(GzooError, match="away from eager PyTorch's") as caught:
        onnx_session(tiny_generator(), photo(32), threads=1, tolerance=0.0)  # nothing is within 0
    assert caught.value.exit_code == 1


ONE_STEP_INSTALL = "install them with: pip install 'gzoo[onnx]'"


@pytest.mark.parametrize("module", ["onnxruntime", "onnxscript"])
def test_a_missing_onnx_dependency_names_the_extra_that_installs_them_all(module, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import MODULE` fail
    if module == "onnxscript":
        # torch.onnx keeps the onnxscript an earlier test imported; without it, its exporter raises this:
        def export(*args, **kwargs):
            raise ModuleNotFoundError("No module named 'onnxscript'", name="onnxscript")

        monkeypatch.setattr(torch.onnx, "export", export)
    with pytest.raises(GzooError) as caught:
        measure_onnx_latency(tiny_generator(), photo(32))
    assert str(caught.value).endswith(f"({module} is not installed); {ONE_STEP_INSTALL}")


def test_convert_from_onnx_without_onnx_names_the_extra(monkeypatch, tmp_path):
    from gzoo.zoo.converters.onnx_style import read_initializers

    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(GzooError) as caught:
        read_initializers(tmp_path / "model.onnx")
    assert str(caught.value) == f"--from onnx-style needs the optional dependencies of gzoo[onnx] (onnx is not " \
                                f"installed); {ONE_STEP_INSTALL}"


def test_interleaved_turns_give_every_model_its_runs():
    calls = []
    latencies = measure_interleaved([tiny_generator(4), tiny_generator(8)], [photo(32), photo(32)], threads=1,
                                    runs=6, rounds=3, progress=lambda done, total: calls.append((done, total)))
    assert [(x.runs, x.warmup, x.runtime) for x in latencies] == [(6, 3, "eager")] * 2  # 3 turns of 1 + 2
    assert calls[-1] == (12, 12) and len(calls) == 6


def test_bench_a_zoo_id_times_its_architecture_with_random_weights():
    result = api.bench("gan-compression/horse2zebra", threads=1, runs=1)
    (only,) = result["models"]
    assert (only["weights"], only["input"], only["runs"], result["ratio"]) == ("random", "3x256x256", 1, None)


@pytest.fixture
def model_dirs(tmp_path):
    shape = {"channels": 3, "height": 32, "width": 32}
    return [str(save_model_dir(tmp_path / f"ngf{ngf}", tiny_generator(ngf).state_dict(),
                               {"arch": "resnet_generator", "arch_args": {"ngf": ngf, "n_blocks": 1}, "input": shape}))
            for ngf in (4, 16)]


def test_bench_vs_prints_both_latencies_and_their_ratio_as_json(run_gzoo, model_dirs):
    a, b = model_dirs
    result = run_gzoo("bench", a, "--vs", b, "--runs", "3", "--threads", "1", "--batch", "2", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)  # stdout holds the JSON document and nothing else
    first, second = document["models"]
    assert (first["model"], second["model"]) == (a, b)
    assert all(m["runs"] == 3 and m["batch"] == 2 and m["weights"] == "directory" for m in (first, second))
    assert (document["threads"], document["batch"], document["runtime"]) == (1, 2, "eager")
    assert document["ratio"] == pytest.approx(second["median_ms"] / first["median_ms"])
    assert 0 < document["ratio"] < math.inf


def test_bench_prints_a_table_and_who_is_faster(run_gzoo, model_dirs):
    result = run_gzoo("bench", *model_dirs[:1], "--vs", model_dirs[1], "--runs", "1", "--threads", "1")
    assert result.returncode == 0, result.stderr
    assert "x faster than" in result.stdout and "eager PyTorch" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["/no/such/dir"], "neither a gzoo model directory nor a zoo id"),
    (["gan-compression/horse2zebra", "--threads", "0"], "--threads must be at least 1"),
])
def test_bad_bench_input_is_one_line_and_exit_2(run_gzoo, args, message):
    result = run_gzoo("bench", *args)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("gzoo: error:") and message in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("arguments, message", [
    ({"model": "no-such/model"}, "neither a gzoo model directory nor a zoo id"),
    ({"model": "original/horse2zebra", "batch": 0}, "--batch must be at least 1"),
    ({"model": "original/horse2zebra", "runs": 0}, "--runs must be at least 1"),
    ({"model": "original/horse2zebra", "runtime": "tensorrt"}, "unknown runtime 'tensorrt'; choose one of eager"),
])
def test_bad_bench_arguments_are_gzoo_errors_of_bad_input(arguments, message):
    with pytest.raises(GzooError, match=message) as caught:
        api.bench(**arguments)
    assert caught.value.exit_code == 2
