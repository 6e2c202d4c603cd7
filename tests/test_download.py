"""A hub id as base model: never fetched unless asked (the error names the command to run); when asked, the hub's
progress bars show and the files' local folder is printed. Sockets are blocked: nothing here reaches a network."""

from __future__ import annotations

import socket

import pytest
from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

from lorakit.cli.main import main
from lorakit.errors import ModelError
from lorakit.models import loading
from lorakit.models.loading import NOTEBOOK_RETRY, fetch_hub_model, is_hub_id, load_base

HUB_ID = "someone/not-a-cached-model"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access in a test")

    for owner, name in ((socket.socket, "connect"), (socket.socket, "connect_ex"), (socket, "create_connection"),
                        (socket, "getaddrinfo")):
        monkeypatch.setattr(owner, name, refuse)


@pytest.fixture()
def fake_hub(monkeypatch, tiny_sd1):
    """DiffusionPipeline.download that records its calls (and whether the hub's bars were on) and "downloads"
    the tiny SD1 model; quiet callers had turned the bars off before."""
    from diffusers import DiffusionPipeline

    calls = []

    def download(repo_id, **kwargs):
        calls.append({"repo": repo_id, "bars": not are_progress_bars_disabled(), **kwargs})
        return str(tiny_sd1)

    monkeypatch.setattr(DiffusionPipeline, "download", download)
    disable_progress_bars()
    yield calls
    enable_progress_bars()
    loading.clear_cache()


def test_what_is_a_hub_id(tmp_path):
    assert is_hub_id("runwayml/stable-diffusion-v1-5")
    assert not is_hub_id("") and not is_hub_id("model.safetensors") and not is_hub_id("./a/b")
    assert not is_hub_id("C:/models") and not is_hub_id("/abs/path") and not is_hub_id("a/b/c")
    (tmp_path / "owner").mkdir()
    (tmp_path / "owner" / "name").mkdir()
    assert not is_hub_id(str(tmp_path / "owner" / "name"))


def test_without_download_one_sentence_names_the_command(tiny_project, capsys):
    project, cfg = tiny_project
    cfg.model.base_model = HUB_ID
    cfg.save(project.config_path)
    assert main(["train", str(project.root)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"run `lorakit train {project.root} --download`." in err
    assert "not in the local cache" in err and HUB_ID in err
    assert main(["grid", str(project.root), "--x", "seed=1,2", "--prompt", "zkx"]) == 2
    assert f"run `lorakit grid {project.root} --download`" in capsys.readouterr().err
    assert main(["doctor", "--base-model", HUB_ID]) == 1
    assert f"lorakit doctor --base-model {HUB_ID} --download" in capsys.readouterr().out
    with pytest.raises(ModelError, match="never downloads unless asked: add --download"):
        load_base(HUB_ID, device="cpu")
    with pytest.raises(ModelError, match="DOWNLOAD = True in the parameters cell"):
        fetch_hub_model(HUB_ID, retry=NOTEBOOK_RETRY)
    assert fetch_hub_model("") is None and fetch_hub_model(str(project.root)) is None  # local: nothing to fetch


def test_download_shows_the_hubs_bars_and_says_where(fake_hub, tiny_sd1, capsys):
    assert main(["doctor", "--base-model", HUB_ID, "--download"]) == 0
    out = capsys.readouterr().out
    assert f"{HUB_ID}: files in {tiny_sd1}" in out
    assert "OK    base model" in out and "sd1" in out
    (call,) = fake_hub
    assert call["repo"] == HUB_ID and call["bars"] and not call.get("local_files_only")
    assert are_progress_bars_disabled()  # as the caller had it


def test_load_base_downloads_outside_the_quiet_loading(fake_hub, tiny_sd1, capsys):
    base = load_base(HUB_ID, device="cpu", allow_download=True)
    assert base.source == HUB_ID and base.family.name == "sd1"  # the LoRA's metadata names the hub id
    assert fake_hub[0]["bars"] and f"files in {tiny_sd1}" in capsys.readouterr().out


def test_train_with_download_then_from_the_cache(fake_hub, tiny_project, capsys):
    project, cfg = tiny_project
    cfg.model.base_model = HUB_ID
    cfg.save(project.config_path)
    assert main(["train", str(project.root), "--download", "--max-steps", "1"]) == 0
    assert "files in" in capsys.readouterr().out
    # the CLI downloads (bars on); the trainer then loads the same snapshot from the cache, offline
    assert [c.get("local_files_only", False) for c in fake_hub] == [False, True]
    assert fake_hub[0]["bars"]
