"""`gzoo push` with the real huggingface_hub client against an upload-capable Hub on loopback.

Nothing leaves 127.0.0.1: tests/loopback_upload_hub.py implements the Hub's create-repo, preupload and commit
endpoints and keeps what it receives.
"""

import hashlib
import json

import pytest
import torch
import yaml
from huggingface_hub import ModelCard, constants, metadata_load
from huggingface_hub.repocard_data import model_index_to_eval_results
from loopback_upload_hub import UploadHub, upload_hub_fixture  # noqa: F401  (registers the fixture)

from gzoo import api, results
from gzoo.data.modeldir import save_model_dir
from gzoo.errors import GzooError
from gzoo.models import create_model

REPO = "loopback-user/horse2zebra-tiny"
FID_PROTOCOL = {"name": "FID, Inception-v3 pool3 (TF 2015-12-05); reference: real test zebra (B) images",
                "fid": "torch-fidelity inception-v3-compat 2048", "images": 120}


@pytest.fixture
def model_directory(tmp_path):
    """A tiny compressed horse2zebra generator, as `gzoo convert` writes it (no zoo id: keyed by its path)."""
    torch.manual_seed(0)
    model = create_model("sub_mobile_resnet_generator", config="4_4_8_4_8_8_4_4")
    config = {"method": "gan-compression", "task": "horse2zebra", "teacher": "original/horse2zebra",
              "arch": "sub_mobile_resnet_generator", "arch_args": {"config": "4_4_8_4_8_8_4_4"}, "license": "MIT",
              "reported": [{"metric": "fid", "value": 65.12, "source": "GAN Compression README, released models"}]}
    return save_model_dir(tmp_path / "tiny", model.state_dict(), config)


def record_fid(directory, value: float, weights_sha256: str) -> None:
    results.record([results.Result(str(directory.resolve()), "fid", value, FID_PROTOCOL, "cpu: test",
                                   weights_sha256, "/data/horse2zebra", "d" * 64)])


def test_push_uploads_the_directory_with_a_card_the_hub_library_reads(upload_hub, model_directory, run_gzoo,
                                                                      tmp_path):
    weights = (model_directory / "model.safetensors").read_bytes()
    record_fid(model_directory, 99.0, "0" * 64)  # other weights: must not reach the card
    record_fid(model_directory, 71.3, hashlib.sha256(weights).hexdigest())

    done = run_gzoo("push", str(model_directory), REPO, "--json")
    assert done.returncode == 0, done.stderr
    pushed = json.loads(done.stdout)
    received = upload_hub.files(REPO)
    assert pushed["repo_id"] == REPO and pushed["url"] == f"{upload_hub.endpoint}/{REPO}"
    assert pushed["commit"] == upload_hub.commits[-1]["oid"] and upload_hub.unknown == []
    assert "POST /api/validate-yaml" in upload_hub.requests  # the server parsed the card's model-index
    assert sorted(pushed["files"]) == sorted(received) == ["README.md", "config.json", "model.safetensors"]
    assert received["model.safetensors"] == weights
    assert received["config.json"] == (model_directory / "config.json").read_bytes()
    assert received["README.md"] == (model_directory / "README.md").read_bytes()  # regenerated in place

    card = received["README.md"].decode()
    metadata = yaml.safe_load(card.split("---\n")[1])
    assert metadata["library_name"] == "gzoo" and metadata["license"] == "mit"
    assert {"gzoo", "image-to-image", "gan", "gan-compression", "horse2zebra"} <= set(metadata["tags"])
    assert metadata["base_model"] == "mit-han-lab/gan-compression"  # the teacher's weights on the Hub
    metrics = metadata["model-index"][0]["results"][0]["metrics"]
    assert metrics == [{"type": "fid", "value": 71.3, "name": FID_PROTOCOL["name"]}]
    assert "65.12" in card and "Reported (published, not measured by gzoo)" in card and "| 99 |" not in card

    path = tmp_path / "received-README.md"
    path.write_bytes(received["README.md"])
    assert ModelCard.load(path).data.eval_results[0].metric_value == 71.3
    name, evals = model_index_to_eval_results(metadata_load(path)["model-index"])
    assert [(e.metric_type, e.metric_value, e.dataset_name, e.dataset_revision, e.task_type) for e in evals] == [
        ("fid", 71.3, "horse2zebra", "d" * 64, "image-to-image")]


def test_a_branch_is_created_and_a_card_without_results_has_no_model_index(upload_hub, model_directory):
    pushed = api.push(model_directory, REPO, revision="v1")
    assert upload_hub.files(REPO, "v1")["model.safetensors"] == (model_directory / "model.safetensors").read_bytes()
    assert pushed["commit"] == upload_hub.commits[-1]["oid"]
    metadata = yaml.safe_load((model_directory / "README.md").read_text().split("---\n")[1])
    assert "model-index" not in metadata and metadata["base_model"] == "mit-han-lab/gan-compression"


@pytest.mark.parametrize("repo_id", ["../x", "a/b/c", "bad name/x"])
def test_an_invalid_repo_id_is_refused_before_any_request(upload_hub, model_directory, repo_id):
    with pytest.raises(GzooError, match="is not a Hub repository id") as error:
        api.push(model_directory, repo_id)
    assert error.value.exit_code == 2 and upload_hub.requests == []


def test_bad_input_exits_2_with_one_line(upload_hub, model_directory, run_gzoo, tmp_path):
    bad_repo = run_gzoo("push", str(model_directory), "../x")
    (tmp_path / "empty").mkdir()
    not_a_model = run_gzoo("push", str(tmp_path / "empty"), REPO)
    for done in (bad_repo, not_a_model):
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and done.stderr.startswith("gzoo: error:")
    assert "'../x' is not a Hub repository id" in bad_repo.stderr
    assert "is not a gzoo model directory" in not_a_model.stderr
    assert upload_hub.requests == []


def test_a_refused_token_exits_1_with_one_line_naming_the_repo(upload_hub, model_directory, run_gzoo, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    done = run_gzoo("push", str(model_directory), REPO)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"gzoo: error: push to {REPO} on {upload_hub.endpoint}: not allowed (401")
    assert "HF_TOKEN" in done.stderr and upload_hub.commits == []


def test_metadata_the_hub_refuses_is_a_failed_run_naming_the_field(upload_hub, model_directory):
    config = json.loads((model_directory / "config.json").read_text())
    (model_directory / "config.json").write_text(json.dumps({**config, "license": "Proprietary"}))
    with pytest.raises(GzooError, match=f"push to {REPO} .*: the Hub refused the card's metadata: .*license") as error:
        api.push(model_directory, REPO)
    assert error.value.exit_code == 1 and upload_hub.commits == []


def test_an_unreachable_hub_is_a_failed_run(model_directory, monkeypatch):
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    with pytest.raises(GzooError, match=f"push to {REPO} on http://127.0.0.1:9 failed: cannot reach") as error:
        api.push(model_directory, REPO)
    assert error.value.exit_code == 1
