"""Resume state: safetensors + JSON round-trip exactly; a pickle (an old state.pt, a planted one) is never opened."""

from __future__ import annotations

import json
import pickle
import random

import numpy as np
import pytest
import torch

from lorakit.errors import LorakitError, ResumeError
from lorakit.train.state import (
    STATE_FILE,
    json_path,
    load_state,
    rng_state,
    save_state,
    set_rng_state,
    state_files,
)


def _evil_pickle(marker) -> bytes:
    # unpickling calls pathlib.Path(marker).touch(): harmless, but visible
    import pathlib

    class Payload:
        def __reduce__(self):
            return (pathlib.Path.touch, (pathlib.Path(marker),))

    return pickle.dumps({"network": Payload()}, protocol=2)


def _training_state(steps: int = 3):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    for _ in range(steps):
        model(torch.randn(2, 4)).square().mean().backward()
        opt.step()
        sched.step()
        opt.zero_grad()
    gen = torch.Generator().manual_seed(7)
    torch.randn(3, generator=gen)
    state = {"network": {f"unet:{k}": v.detach().clone() for k, v in model.named_parameters()},
             "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": rng_state(gen), "step": steps,
             "epoch": 1, "batch_in_epoch": 2, "session_id": "abc123", "checkpoints": ["/x/a-000001.safetensors"],
             "losses": [0.5, float("nan"), 0.25]}
    return state, gen, model, opt, sched


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, float) and np.isnan(a):
        return isinstance(b, float) and np.isnan(b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def test_state_round_trips_exactly(tmp_path):
    state, gen, *_ = _training_state()
    path = save_state(tmp_path / STATE_FILE, state)
    assert path.name == "state.safetensors" and json_path(path).is_file()
    assert sorted(p.name for p in state_files(path)) == ["state.json", "state.safetensors"]
    back = load_state(path)
    assert _equal(state, back)
    assert isinstance(next(iter(back["optimizer"]["state"])), int)  # param ids stay ints: load_state_dict maps them
    assert "optimizer.state.0.exp_avg" in __import__("safetensors.torch").torch.load_file(path)
    json.loads(json_path(path).read_text())  # strict JSON (no NaN literal)


def test_loaded_state_resumes_optimizer_and_rng(tmp_path):
    state, gen, model, opt, sched = _training_state()
    path = save_state(tmp_path / STATE_FILE, state)
    expect = (random.random(), np.random.rand(), torch.rand(2), torch.randn(2, generator=gen))

    back = load_state(path)
    model2 = torch.nn.Linear(4, 3)
    model2.load_state_dict({k.partition(":")[2]: v for k, v in back["network"].items()})
    opt2 = torch.optim.AdamW(model2.parameters(), lr=1e-3)
    sched2 = torch.optim.lr_scheduler.LambdaLR(opt2, lambda s: 1.0 / (1 + s))  # made before loading, as the loop does
    opt2.load_state_dict(back["optimizer"])
    sched2.load_state_dict(back["scheduler"])
    gen2 = torch.Generator()
    random.seed(99), np.random.seed(99), torch.manual_seed(99)
    set_rng_state(back["rng"], gen2)
    got = (random.random(), np.random.rand(), torch.rand(2), torch.randn(2, generator=gen2))
    assert got[0] == expect[0] and got[1] == expect[1]
    assert torch.equal(got[2], expect[2]) and torch.equal(got[3], expect[3])
    for o in (opt, opt2):  # one more identical step on both: the same weights
        o.zero_grad()
    x = torch.ones(2, 4)
    for m, o, s in ((model, opt, sched), (model2, opt2, sched2)):
        m(x).square().mean().backward()
        o.step()
        s.step()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), model2.parameters(), strict=True))


@pytest.mark.parametrize("name", ["state.pt", STATE_FILE])
def test_a_planted_pickle_is_refused_unopened(tmp_path, name):
    marker = tmp_path / "pwned"
    planted = tmp_path / "output" / "state" / name
    planted.parent.mkdir(parents=True)
    planted.write_bytes(_evil_pickle(marker))
    pickle.loads(_evil_pickle(tmp_path / "control"))  # the payload does work when unpickled...
    assert (tmp_path / "control").exists()
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(ResumeError) as e:
        load_state(planted.with_name(STATE_FILE))
    msg = str(e.value)
    assert isinstance(e.value, LorakitError) and str(planted) in msg and "without --resume" in msg
    assert msg.count(". ") == 0 and "\n" not in msg  # one sentence
    assert not marker.exists()  # ...but lorakit never unpickled it
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_a_torch_save_zip_is_refused(tmp_path):
    path = tmp_path / STATE_FILE
    torch.save({"step": 1}, path)
    with pytest.raises(ResumeError, match="pickle"):
        load_state(path)


def test_half_written_or_edited_state_is_a_sentence(tmp_path):
    state, *_ = _training_state()
    path = save_state(tmp_path / STATE_FILE, state)
    json_path(path).unlink()
    with pytest.raises(ResumeError, match="state.json is missing"):
        load_state(path)
    path = save_state(tmp_path / STATE_FILE, state)
    meta = json.loads(json_path(path).read_text())
    other = {**state, "network": {k: v + 1 for k, v in state["network"].items()}}
    save_state(tmp_path / "other.safetensors", other)
    (tmp_path / "other.safetensors").replace(path)  # tensors of another save beside this JSON
    with pytest.raises(ResumeError, match="does not match state.json"):
        load_state(path)
    json_path(path).write_text(json.dumps({**meta, "format": "x"}))
    with pytest.raises(ResumeError, match="not a lorakit training state"):
        load_state(path)
    with pytest.raises(ResumeError, match="no saved state"):
        load_state(tmp_path / "nothing" / STATE_FILE)


def test_resume_refuses_a_planted_pickle_and_writes_nothing(tiny_project):
    from dataset_corpus import digests

    from lorakit.train.loop import train

    project, cfg = tiny_project
    marker = project.root.parent / "pwned"
    project.state_dir.mkdir(parents=True, exist_ok=True)
    for name in ("state.pt", STATE_FILE):  # whichever name the loop reads
        (project.state_dir / name).write_bytes(_evil_pickle(marker))
    before = digests(project.root)
    with pytest.raises(ResumeError, match="never opens it: start without --resume"):
        train(project, cfg, resume=True)
    assert not marker.exists()
    assert {k: v for k, v in digests(project.root).items() if not k.startswith(("logs", "cache"))} == \
        {k: v for k, v in before.items() if not k.startswith(("logs", "cache"))}
