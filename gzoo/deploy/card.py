"""The short card (README.md) of an export directory: what the artefact is, how it was checked, how to run it."""

from typing import Any

RUN = {
    "onnx": ('import onnxruntime as ort\nsession = ort.InferenceSession("model.onnx")\n'
             'output = session.run(None, {"input": image})[0]'),
    "openvino": ('import openvino as ov\ncompiled = ov.Core().compile_model("model.xml", "CPU")\n'
                 'output = compiled(image)[0]'),
    "executorch": ('from executorch.runtime import Runtime\n'
                   'forward = Runtime.get().load_program("model.pte").load_method("forward")\n'
                   'output = forward.execute([torch.from_numpy(image)])[0]'),
}


def export_card(config: dict[str, Any]) -> str:
    """Markdown describing an export from its config.json."""
    source = config["source"]
    name = source.get("id") or source.get("path") or source.get("arch")
    _, _, height, width = config["input"]["shape"]
    low, high = config["value_range"]
    check = config["check"]
    precision = "int8 (NNCF)" if config["int8"] else "fp32"
    lines = [
        f"# {name}: {config['format']} export, {precision}",
        "",
        f"Exported by gzoo {config['gzoo_version']} from `{source.get('arch')}` "
        f"({', '.join(f'{k}={v!r}' for k, v in (source.get('arch_args') or {}).items())}); "
        f"conversion: {config['conversion']}.",
        "",
        f"- input `input`: float32 1 x 3 x {height} x {width} (NCHW), RGB scaled to [{low:g}, {high:g}]",
        f"- output: float32 RGB in [{low:g}, {high:g}], same layout",
        f"- checked before writing: max abs difference from {check['against']} {check['max_abs_difference']:.3g} "
        f"on {check['image']} (tolerance {check['tolerance']:g})",
    ]
    int8 = config["int8"]
    if int8:
        floats = ", ".join(int8["float_norms"]) or "none"
        lines += [
            f"- int8: PSNR against fp32 {int8['psnr_vs_fp32']:.1f} dB (worst image {int8['psnr_vs_fp32_min']:.1f} dB) "
            f"on the {int8['calibration']['images']} calibration images of `{int8['calibration']['folder']}`; "
            f"instance norms kept in float: {floats}",
        ]
    if config.get("layers"):
        layers = "; ".join(f"{kind} {', '.join(f'{n} {p}' for p, n in precisions.items())}"
                           for kind, precisions in config["layers"].items())
        lines.append(f"- layers as OpenVINO's CPU plugin runs them: {layers}")
    lines += ["", "```python", "# image: a float32 numpy array shaped as the input above", RUN[config["format"]], "```",
              ""]
    return "\n".join(lines)
