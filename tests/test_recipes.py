"""The shipped recipes load and carry the published settings; a broken recipe is refused before anything runs."""

from pathlib import Path

import pytest
import yaml

from gzoo.compress.recipe import load_recipe
from gzoo.errors import GzooError

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def shipped_recipes() -> list[Path]:
    """Every recipe file under recipes/, except the demo ones (written and tested elsewhere)."""
    return sorted(p for p in RECIPES.glob("**/*.yaml") if p.relative_to(RECIPES).parts[0] != "demo")


def test_the_gan_compression_recipes_are_shipped():
    names = {p.relative_to(RECIPES).as_posix() for p in shipped_recipes()}
    for method in ("gan_compression", "fast_gan_compression"):
        for task in ("horse2zebra", "edges2shoes-r", "cityscapes", "map2sat"):
            assert f"{method}/{task}.yaml" in names


@pytest.mark.parametrize("path", shipped_recipes(), ids=lambda p: p.relative_to(RECIPES).as_posix())
def test_every_shipped_recipe_loads(path):
    recipe = load_recipe(path)
    assert recipe.path == str(path)
    assert recipe.teacher and recipe.source and recipe.data.root


# The numbers of mit-han-lab/gan-compression's scripts (and the defaults of its options where a script is silent).
# file, method, budget, lambda_recon, lambda_distill, gan_mode, search space, student ngf, algorithm, finetune
PUBLISHED = [
    ("gan_compression/horse2zebra", "gan-compression", 3e9, 10, 0.01, "lsgan", "channels-32", 32,
     "brute_force", False),
    ("gan_compression/edges2shoes-r", "gan-compression", 4.9e9, 100, 1, "hinge", "channels-48", 48,
     "brute_force", True),
    ("gan_compression/cityscapes", "gan-compression", 5.7e9, 100, 1, "hinge", "channels-48", 48,
     "brute_force", True),
    ("gan_compression/map2sat", "gan-compression", 4.6e9, 10, 0.01, "hinge", "channels-48", 48,
     "brute_force", True),
    ("fast_gan_compression/horse2zebra", "fast-gan-compression", 3e9, 10, 0.01, "lsgan", "channels-64-cyclegan", 64,
     "evolution", False),
    ("fast_gan_compression/edges2shoes-r", "fast-gan-compression", 4.9e9, 100, 1, "hinge", "channels-64-pix2pix", 64,
     "evolution", True),
    ("fast_gan_compression/cityscapes", "fast-gan-compression", 5.7e9, 100, 1, "hinge", "channels-64-pix2pix", 64,
     "evolution", False),
    ("fast_gan_compression/map2sat", "fast-gan-compression", 4.6e9, 10, 0.01, "hinge", "channels-64-pix2pix", 64,
     "evolution", True),
]


@pytest.mark.parametrize(("name", "method", "budget", "lambda_recon", "lambda_distill", "gan_mode", "space", "ngf",
                          "algorithm", "finetune"), PUBLISHED, ids=[row[0] for row in PUBLISHED])
def test_shipped_recipe_has_the_published_settings(name, method, budget, lambda_recon, lambda_distill, gan_mode,
                                                   space, ngf, algorithm, finetune):
    recipe = load_recipe(RECIPES / f"{name}.yaml")
    assert recipe.method == method
    assert recipe.stages.search.budget == budget
    assert recipe.training.lambda_recon == lambda_recon
    assert recipe.training.lambda_distill == lambda_distill
    assert recipe.training.gan_mode == gan_mode
    assert recipe.student.search_space == space
    assert recipe.student.ngf == ngf
    assert recipe.stages.search.algorithm == algorithm
    assert (recipe.stages.finetune is not None) == finetune
    assert (recipe.stages.distill is not None) == (method == "gan-compression")
    assert recipe.teacher == f"original/{Path(name).name}"


@pytest.mark.parametrize(("name", "direction", "metric"), [
    ("horse2zebra", "AtoB", "fid"), ("edges2shoes-r", "AtoB", "fid"),
    ("cityscapes", "BtoA", "miou"), ("map2sat", "BtoA", "fid")])
def test_direction_and_search_metric_follow_the_task(name, direction, metric):
    for method in ("gan_compression", "fast_gan_compression"):
        recipe = load_recipe(RECIPES / method / f"{name}.yaml")
        assert recipe.data.direction == direction
        assert recipe.stages.search.metric == metric


# ---------------------------------------------------------------- broken recipes: one GzooError naming the key


def base_document() -> dict:
    return yaml.safe_load((RECIPES / "gan_compression" / "horse2zebra.yaml").read_text())


def write(tmp_path: Path, document: dict) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def refused(path: Path, **kwargs) -> str:
    with pytest.raises(GzooError) as caught:
        load_recipe(path, **kwargs)
    message = str(caught.value)
    assert "\n" not in message  # one line, as the CLI prints it
    return message


def test_a_copy_of_a_shipped_recipe_loads(tmp_path):
    assert load_recipe(write(tmp_path, base_document())).stages.search.budget == 3e9


def test_unknown_key_is_named_with_its_section(tmp_path):
    document = base_document()
    document["training"]["lamda_recon"] = 10.0
    message = refused(write(tmp_path, document))
    assert "'training.lamda_recon'" in message
    assert "lambda_recon" in message.replace("lamda_recon", "")  # the suggestion


def test_wrong_type_is_named(tmp_path):
    document = base_document()
    document["training"]["lr"] = "fast"
    message = refused(write(tmp_path, document))
    assert "'training.lr'" in message and "number" in message


def test_missing_teacher_is_refused(tmp_path):
    document = base_document()
    del document["teacher"]
    assert "teacher" in refused(write(tmp_path, document))


def test_missing_data_is_refused(tmp_path):
    document = base_document()
    del document["data"]["root"]
    assert "data.root" in refused(write(tmp_path, document))


def test_a_budget_below_the_smallest_config_is_refused(tmp_path):
    document = base_document()
    document["stages"]["search"]["budget"] = 1.0e6
    message = refused(write(tmp_path, document))
    assert "stages.search.budget" in message and "smallest config" in message


def test_overrides_apply_and_bad_ones_are_refused(tmp_path):
    path = write(tmp_path, base_document())
    assert load_recipe(path, overrides=["training.batch_size=8"]).training.batch_size == 8
    assert "section.key=value" in refused(path, overrides=["training.lr"])
    assert "'training.lr'" in refused(path, overrides=["training.lr=fast"])
    assert "'training.lamda_recon'" in refused(path, overrides=["training.lamda_recon=1.0"])
    assert "smallest config" in refused(path, overrides=["stages.search.budget=1000000"])


def test_a_yaml_syntax_error_names_the_recipe_and_the_line(tmp_path):
    text = (RECIPES / "gan_compression" / "horse2zebra.yaml").read_text()
    assert "  crop_size: 256\n" in text
    broken = tmp_path / "broken.yaml"
    broken.write_text(text.replace("  crop_size: 256\n", "  crop_size: [256\n", 1))
    line = text.splitlines().index("  crop_size: 256") + 1
    message = refused(broken)
    assert message.startswith(f"recipe {broken}:") and "malformed YAML" in message
    # PyYAML marks the problem where the unclosed list is noticed: at the broken line or the one after it.
    assert int(message.split(":")[1]) in (line, line + 1)
