"""The demo runs the whole path offline, with no environment variable set and every socket blocked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from offline import BLOCK_SOCKETS
from PIL import Image

from lorakit.lora.file import read_lora_metadata

BLOCKED_RUN = BLOCK_SOCKETS + textwrap.dedent("""
    import sys
    from lorakit.cli.main import main
    sys.exit(main(["demo", sys.argv[1], "--epochs", "1"]))
""")


def test_demo_offline_with_sockets_blocked(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_", "LORAKIT_"))}
    env["OMP_NUM_THREADS"] = "1"
    env["LORAKIT_CACHE"] = str(tmp_path / "cache")  # a fresh cache: nothing prepared beforehand
    out = subprocess.run([sys.executable, "-c", BLOCKED_RUN, str(tmp_path / "demo")], capture_output=True,
                         text=True, env=env, timeout=900)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    assert "network access attempted" not in out.stderr
    lines = dict(line.split(": ", 1) for line in out.stdout.splitlines() if line.startswith(("LoRA: ", "grid: ")))
    lora, grid = lines["LoRA"], lines["grid"]
    assert lora.endswith(".safetensors") and os.path.isfile(lora)
    assert read_lora_metadata(lora)["ss_network_module"] == "networks.lora"
    with Image.open(grid) as im:
        assert im.width > 64 and "parameters" in im.info
    assert json.loads(Path(grid).with_suffix(".json").read_text())["cells"]
    assert (tmp_path / "demo" / "lorakit.toml").is_file()
    assert list((tmp_path / "demo" / "dataset").rglob("*.txt")), "the demo dataset was copied with captions"
