"""The command line runs the same functions as the notebooks, with clear errors."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from lorakit.cli.main import main
from lorakit.doctor import run_checks


def test_doctor_rows_and_exit_code(capsys, tiny_sd1):
    rows = run_checks(str(tiny_sd1))
    checks = {r.check: r for r in rows}
    assert {"python", "gpu", "disk", "torch", "diffusers", "peft", "base model"} <= set(checks)
    assert checks["base model"].status == "ok" and "sd1" in checks["base model"].value
    assert main(["doctor", "--base-model", str(tiny_sd1)]) == 0
    assert "base model" in capsys.readouterr().out


def test_doctor_explains_a_missing_model(tmp_path, capsys):
    rows = run_checks(str(tmp_path / "nope.safetensors"))
    bad = [r for r in rows if r.check == "base model"][0]
    assert bad.status == "fail" and "not found" in bad.advice
    assert main(["doctor", "--base-model", "someone/some-model"]) == 1
    assert "never downloads" in capsys.readouterr().out


def test_train_then_grid(tiny_project, capsys):
    project, cfg = tiny_project
    assert main(["train", str(project.root)]) == 0
    out = capsys.readouterr().out
    assert "zkx.safetensors" in out
    assert main(["grid", str(project.root), "--x", "checkpoint", "--y", "strength=1,0", "--prompt", "zkx, thing",
                 "--steps", "3"]) == 0
    out = capsys.readouterr().out
    png = [line for line in out.splitlines() if line.endswith(".png")][0]
    with Image.open(png) as im:
        assert "Steps: 3" in im.info["parameters"]
    record = json.loads(Path(png).with_suffix(".json").read_text())
    assert len(record["cells"]) == 2 and len(record["cells"][0]) == 2


def test_cli_errors_are_one_line_not_tracebacks(tmp_path, capsys):
    assert main(["train", str(tmp_path / "missing")]) == 2
    assert "error: No project folder" in capsys.readouterr().err
    (tmp_path / "p").mkdir()
    assert main(["train", str(tmp_path / "p")]) == 2
    assert "run notebook 02" in capsys.readouterr().err


def test_help_imports_no_torch_and_the_resize_methods_agree():
    """`lorakit --help` (and any subcommand's --help) answers without importing torch: it took 2.2 s, now 0.1 s."""
    import subprocess
    import sys

    from lorakit.cli.lora import RESIZE_METHODS
    from lorakit.lora.tools.common import METHODS

    assert RESIZE_METHODS == METHODS
    code = ("import sys\nfrom lorakit.cli.main import main\nfor argv in (['--help'], ['lora', 'resize', '--help'], "
            "['train', '--help']):\n    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"
