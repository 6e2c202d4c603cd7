"""LoRA tools against known answers: a resize to full rank is exact and to rank k is the best rank-k approximation;
the dynamic rules keep the ranks their definitions give; a concatenated merge is the weighted sum of the ΔWs;
merging into a checkpoint equals applying the LoRA at strength 1; an extract of base + a rank-r ΔW at rank r gives
ΔW back; every output applies through lorakit's patching (and diffusers); bad requests write nothing."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from lorakit.errors import LoraToolError
from lorakit.evaluate.generate import Generator
from lorakit.lora.network import detach_all
from lorakit.lora.patching import WeightPatcher, layer_index
from lorakit.lora.tools import extract_lora, inspect_lora, merge_into_checkpoint, merge_loras, resize_lora
from lorakit.lora.tools.checkpoint import CheckpointLayout
from lorakit.models.loading import load_base
from lorakit.models.single_file import save_single_file

TOL = dict(rtol=1e-5, atol=1e-6)


def _base(folder):
    base = load_base(str(folder))
    detach_all(base)
    return base


def random_lora(path, base, rank=3, alpha=2.0, seed=0, convs=True, te=True, keys=None) -> dict[str, torch.Tensor]:
    """A LoCon file over the base's layers (kohya keys from lorakit's layer index); returns its ΔW per key, flat."""
    gen = torch.Generator().manual_seed(seed)
    tensors, deltas = {}, {}
    for key, layer in sorted(layer_index(base).items()):
        w = layer.weight
        if keys is not None and key not in keys:
            continue
        if key.startswith("lora_te") and "encoder_layers" not in key or key.startswith("lora_te") and not te:
            continue
        conv = w.dim() == 4 and w.shape[2:] != (1, 1)
        if (conv and not convs) or min(w.shape[0], w[0].numel()) < 2 * rank:
            continue
        down = torch.randn(rank, *w.shape[1:], generator=gen) * 0.2
        up = torch.randn(w.shape[0], rank, *([1, 1] if w.dim() == 4 else []), generator=gen) * 0.2
        tensors |= {f"{key}.lora_down.weight": down, f"{key}.lora_up.weight": up, f"{key}.alpha": torch.tensor(alpha)}
        deltas[key] = alpha / rank * up.flatten(1) @ down.flatten(1)
    save_file(tensors, str(path), metadata={"ss_network_module": "networks.lora", "ss_network_dim": str(rank),
                                            "ss_network_alpha": str(alpha), "ss_output_name": path.stem})
    return deltas


def file_deltas(path) -> dict[str, torch.Tensor]:
    """alpha / rank × up @ down per key of a written file, flat, fp32 (computed here, not by the tools)."""
    sd = load_file(str(path))
    out = {}
    for k in sd:
        if k.endswith(".alpha"):
            g = k[:-6]
            up, down = sd[f"{g}.lora_up.weight"].float(), sd[f"{g}.lora_down.weight"].float()
            out[g] = sd[k].item() / down.shape[0] * up.flatten(1) @ down.flatten(1)
    return out


def applied(base, path) -> dict[str, torch.Tensor]:
    """What lorakit's patching adds to each layer for the file at strength 1 (flat); the weights are restored."""
    patcher = WeightPatcher(base)
    sd = load_file(str(path))
    patcher.check(sd, path.name)
    before = {k: patcher.index[k].weight.detach().clone() for k in {g.split(".", 1)[0] for g in sd}}
    patcher.apply([(sd, 1.0)])
    out = {k: (patcher.index[k].weight.detach() - w).flatten(1) for k, w in before.items()}
    patcher.restore()
    return out


def best_rank_k(delta: torch.Tensor, k: int) -> tuple[torch.Tensor, float]:
    u, s, vh = torch.linalg.svd(delta.double(), full_matrices=False)
    approx = (u[:, :k] * s[:k]) @ vh[:k]
    return approx.float(), math.sqrt(float((s[k:] ** 2).sum() / (s**2).sum()))


@pytest.fixture(scope="module")
def sd1(tiny_sd1):
    return _base(tiny_sd1)


@pytest.fixture(scope="module")
def locon(sd1, tmp_path_factory):
    path = tmp_path_factory.mktemp("loras") / "locon.safetensors"
    return path, random_lora(path, sd1, rank=4, alpha=2.0)


# ---- resize ------------------------------------------------------------------------------------------------
def test_resize_to_full_rank_is_exact_and_applies(sd1, locon, tmp_path):
    src, deltas = locon
    assert any(".lora_down" in k and v.dim() == 4 and v.shape[2] == 3 for k, v in load_file(str(src)).items())
    out = tmp_path / "full.safetensors"
    report = resize_lora(src, out, rank=4, precision="float")
    got = file_deltas(out)
    assert set(got) == set(deltas)
    for key, delta in deltas.items():
        torch.testing.assert_close(got[key], delta, **TOL, msg=key)
    assert report.max_error < 1e-5
    by_patching = applied(sd1, out)
    for key, delta in deltas.items():
        torch.testing.assert_close(by_patching[key], delta, **TOL, msg=key)


def test_resize_to_rank_k_is_the_best_rank_k_approximation(locon, tmp_path):
    src, deltas = locon
    out = tmp_path / "r2.safetensors"
    report = resize_lora(src, out, rank=2, precision="float")
    sd, got = load_file(str(out)), file_deltas(out)
    errors = {m.key: m.error for m in report.modules}
    for key, delta in deltas.items():
        assert sd[f"{key}.lora_down.weight"].shape[0] == 2
        approx, err = best_rank_k(delta, 2)
        torch.testing.assert_close(got[key], approx, rtol=1e-4, atol=1e-5, msg=key)
        assert errors[key] == pytest.approx(err, rel=1e-4)
        assert (got[key] - delta).norm() / delta.norm() == pytest.approx(err, rel=1e-3)
    meta = inspect_lora(out).recipe
    assert meta["ss_network_dim"] == "2" and meta["ss_network_alpha"] == "1.0"  # alpha = scale (2/4) × 2
    assert report.new_bytes < report.old_bytes


def _spectrum_file(path, s):
    """One module whose ΔW has exactly the singular values ``s`` (orthonormal U, V; alpha = rank)."""
    q1, _ = torch.linalg.qr(torch.randn(24, len(s), generator=torch.Generator().manual_seed(1)))
    q2, _ = torch.linalg.qr(torch.randn(20, len(s), generator=torch.Generator().manual_seed(2)))
    key = "lora_unet_down_blocks_1_attentions_0_proj_in"
    save_file({f"{key}.lora_up.weight": (q1 * torch.tensor(s)).contiguous(), f"{key}.lora_down.weight": q2.T.contiguous(),
               f"{key}.alpha": torch.tensor(float(len(s)))}, str(path))
    return key


@pytest.mark.parametrize("method,param", [("sv_ratio", 3.0), ("sv_ratio", 10.0), ("sv_fro", 0.9), ("sv_fro", 0.99),
                                          ("sv_cumulative", 0.9), ("sv_cumulative", 0.5)])
def test_dynamic_methods_keep_the_ranks_their_definitions_give(tmp_path, method, param):
    s = [8.0, 4.0, 2.0, 1.0, 0.5, 0.25]
    src = tmp_path / "spectrum.safetensors"
    key = _spectrum_file(src, s)

    def keeps(k):  # the definitions, written out
        if method == "sv_ratio":
            return all(x > s[0] / param for x in s[:k]) and not (k < len(s) and s[k] > s[0] / param)
        share = (lambda xs: sum(xs)) if method == "sv_cumulative" else (lambda xs: math.sqrt(sum(x * x for x in xs)))
        target = param * share(s)
        return share(s[:k]) >= target and (k == 1 or share(s[: k - 1]) < target)

    expected = next(k for k in range(1, len(s) + 1) if keeps(k))
    out = tmp_path / "dyn.safetensors"
    report = resize_lora(src, out, rank=6, method=method, param=param, precision="float")
    assert load_file(str(out))[f"{key}.lora_down.weight"].shape[0] == expected
    tail = math.sqrt(sum(x * x for x in s[expected:]) / sum(x * x for x in s))
    assert report.modules[0].error == pytest.approx(tail, rel=1e-4)
    capped = resize_lora(src, tmp_path / "capped.safetensors", rank=2, method=method, param=param)
    assert capped.modules[0].new_rank == min(expected, 2), "rank is the most a dynamic method keeps"


# ---- merge -------------------------------------------------------------------------------------------------
def test_concatenated_merge_is_the_weighted_sum_and_diffusers_applies_it(sd1, locon, tmp_path, tiny_sd1):
    a, da = locon
    b = tmp_path / "b.safetensors"
    db = random_lora(b, sd1, rank=2, alpha=1.0, seed=5, convs=False, te=False)
    out = tmp_path / "ab.safetensors"
    report = merge_loras([(a, 0.7), (b, -0.5)], out, precision="float")
    expected = {k: 0.7 * da.get(k, 0) - 0.5 * db.get(k, 0) for k in set(da) | set(db)}
    got = file_deltas(out)
    assert set(got) == set(expected)
    for key, delta in expected.items():
        torch.testing.assert_close(got[key], delta, **TOL, msg=key)
    assert {m.new_rank for m in report.modules} == {4, 6}, "ranks add up where both files adapt a layer"
    for key, delta in applied(sd1, out).items():
        torch.testing.assert_close(delta, expected[key], **TOL, msg=key)
    # diffusers (the generator's path for plain LoRA files) takes every module of the file, at the same ΔW
    gen = Generator(sd1)
    adapter = gen._adapter_for(out)
    loaded = {}
    for prefix, model in [("lora_unet", sd1.unet), ("lora_te", sd1.text_encoders[0])]:
        for name, module in model.named_modules():
            if hasattr(module, "get_delta_weight") and adapter in getattr(module, "lora_A", {}):
                from lorakit.lora.network import te_key, unet_key

                key = unet_key(sd1, name) if prefix == "lora_unet" else te_key(prefix, name)
                loaded[key] = module.get_delta_weight(adapter).detach().flatten(1)
    detach_all(sd1)
    assert set(loaded) == set(expected)
    for key, delta in expected.items():
        torch.testing.assert_close(loaded[key], delta, rtol=1e-4, atol=1e-5, msg=key)


def test_svd_merge_is_the_best_rank_k_approximation_of_the_sum(sd1, locon, tmp_path):
    a, da = locon
    b = tmp_path / "b.safetensors"
    db = random_lora(b, sd1, rank=3, alpha=3.0, seed=7)
    out = tmp_path / "ab3.safetensors"
    report = merge_loras([(a, 1.0), (b, 0.5)], out, rank=3, precision="float")
    got = file_deltas(out)
    errors = {m.key: m.error for m in report.modules}
    for key in da:
        approx, err = best_rank_k(da[key] + 0.5 * db[key], 3)
        torch.testing.assert_close(got[key], approx, rtol=1e-4, atol=1e-5, msg=key)
        assert errors[key] == pytest.approx(err, rel=1e-3, abs=1e-6)


@pytest.fixture(scope="module")
def single_files(tmp_path_factory, tiny_sd1, tiny_sd2v, tiny_sdxl):
    tmp = tmp_path_factory.mktemp("ckpt")
    folders = {"sd1": tiny_sd1, "sd2-v": tiny_sd2v, "sdxl": tiny_sdxl}
    return {f: (save_single_file(_base(d).pipe, tmp / f"{f}.safetensors", f), d) for f, d in folders.items()}


@pytest.mark.parametrize("family", ["sd1", "sd2-v", "sdxl"])
def test_merge_into_checkpoint_equals_applying_at_strength_1(single_files, family, tmp_path):
    base_file, folder = single_files[family]
    base = load_base(str(base_file), family=family, single_file_config=folder)
    lora = tmp_path / "l.safetensors"
    deltas = random_lora(lora, base, rank=2, alpha=1.0, seed=3)
    assert any(k.startswith("lora_te") for k in deltas) and any(k.startswith("lora_unet") for k in deltas)
    out = tmp_path / "merged.safetensors"
    merge_into_checkpoint([(lora, 1.0)], base_file, out, precision="float", config=folder)
    assert set(load_file(str(out))) == set(load_file(str(base_file))), "the same original layout, nothing dropped"
    merged = load_base(str(out), family=family, single_file_config=folder)
    patcher = WeightPatcher(base)
    patcher.apply([(load_file(str(lora)), 1.0)])
    try:
        index = layer_index(merged)
        for key, layer in patcher.index.items():
            torch.testing.assert_close(index[key].weight, layer.weight, **TOL, msg=key)
    finally:
        patcher.restore()
    half = tmp_path / "half.safetensors"
    merge_into_checkpoint([(lora, 1.0)], base_file, half, config=folder)
    assert {v.dtype for v in load_file(str(half)).values() if v.is_floating_point()} == {torch.float16}


# ---- extract -----------------------------------------------------------------------------------------------
def test_extract_of_base_plus_a_rank_r_delta_gives_the_delta_back(single_files, tmp_path):
    base_file, folder = single_files["sd1"]
    base = load_base(str(base_file), single_file_config=folder)
    layout = CheckpointLayout.of(base_file, folder)
    lora = tmp_path / "l.safetensors"
    deltas = random_lora(lora, base, rank=3, alpha=3.0, seed=9, keys=layout.trained | layout.conv_trained)
    assert any(k.endswith("conv1") for k in deltas) and any(k.startswith("lora_te") for k in deltas)
    tuned = tmp_path / "tuned.safetensors"
    merge_into_checkpoint([(lora, 1.0)], base_file, tuned, precision="float", config=folder)
    out = tmp_path / "extracted.safetensors"
    report = extract_lora(tuned, base_file, out, rank=3, conv_rank=3, precision="float", config=folder)
    got = file_deltas(out)
    assert set(got) == set(deltas), "exactly the changed layers"
    for key, delta in deltas.items():
        torch.testing.assert_close(got[key], delta, rtol=1e-4, atol=1e-5, msg=key)
    assert report.max_error < 1e-4
    for key, delta in applied(base, out).items():
        torch.testing.assert_close(delta, deltas[key], rtol=1e-4, atol=1e-5, msg=key)


# ---- inspect -----------------------------------------------------------------------------------------------
def test_inspect_reports_ranks_recipe_and_which_blocks_learned(sd1, locon, tmp_path):
    path, deltas = locon
    report = inspect_lora(path)
    assert report.network.startswith("LoCon") and report.ranks == {4: len(deltas)}
    assert report.recipe["ss_network_dim"] == "4"
    norms = {m.key: m.norm for m in report.modules}
    for key, delta in deltas.items():
        assert norms[key] == pytest.approx(float(delta.norm()), rel=1e-4)
    # make one block learn a lot more: the table and the text say so
    sd = load_file(str(path))
    loud = "lora_unet_up_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    sd[f"{loud}.lora_up.weight"] = sd[f"{loud}.lora_up.weight"] * 100
    louder = tmp_path / "loud.safetensors"
    save_file(sd, str(louder))
    order = [re.sub(r"[\d-]+$", "", b) for b, _ in inspect_lora(louder).block_totals()]
    assert order == sorted(order, key=["TE", "IN", "MID", "OUT", "BASE"].index), "blocks in model order"
    totals = dict(inspect_lora(louder).block_totals())
    assert max(totals, key=totals.get) == "OUT00"  # SD1 naming with the tiny model's 1 layer per block
    text = inspect_lora(louder).format()
    assert re.search(r"OUT00\s+█{40}", text)
    picture = tmp_path / "blocks.png"
    inspect_lora(louder).heatmap(picture)
    assert picture.read_bytes()[:4] == b"\x89PNG"


def test_inspect_reads_lycoris_files(sd1, tmp_path):
    from test_patching import _write

    path = tmp_path / "loha.safetensors"
    trained = _write(sd1, "loha", path)
    report = inspect_lora(path)
    assert report.network.startswith("LoHa")
    norms = {m.key: m.norm for m in report.modules}
    for key, delta in trained.items():
        assert norms[key] == pytest.approx(float(delta.norm()), rel=1e-4)
    with pytest.raises(LoraToolError, match="LoHa"):
        resize_lora(path, tmp_path / "r.safetensors", rank=1)
    assert not (tmp_path / "r.safetensors").exists()


# ---- refusals ----------------------------------------------------------------------------------------------
def test_bad_requests_are_one_sentence_and_write_nothing(sd1, locon, single_files, tiny_sdxl, tmp_path):
    src, _ = locon
    xl = tmp_path / "xl.safetensors"
    random_lora(xl, _base(tiny_sdxl), rank=2)
    base_file, folder = single_files["sd1"]
    out = tmp_path / "out.safetensors"
    cases = [
        (lambda: merge_loras([(src, 1.0), (xl, 1.0)], out), r"locon\.safetensors is an SD 1\.x or SD 2\.x LoRA and "
                                                           r"xl\.safetensors an SDXL LoRA"),
        (lambda: merge_into_checkpoint([(xl, 1.0)], base_file, out, config=folder),
         r"xl\.safetensors is an SDXL LoRA and sd1\.safetensors an SD 1\.x checkpoint"),
        (lambda: resize_lora(src, out, rank=8), "rank 4 at most"),
        (lambda: merge_loras([(src, 1.0)], out, rank=40), r"rank 40 is above the size of lora_\w+ \(\d+"),
        (lambda: extract_lora(base_file, base_file, out, rank=40, config=folder), r"rank 40 is above the size"),
        (lambda: extract_lora(base_file, base_file, out, rank=2, config=folder), "nothing to extract"),
        (lambda: resize_lora(src, out, rank=2, method="sv_fro", param=1.5), "between 0 and 1"),
        (lambda: resize_lora(src, out, rank=2, method="sv_fro"), "needs a parameter"),
    ]
    for call, message in cases:
        with pytest.raises(LoraToolError, match=message) as e:
            call()
        assert str(e.value).count(". ") <= 2 and "\n" not in str(e.value)
        assert not out.exists() and not list(tmp_path.glob(".*.tmp"))
    out.write_bytes(b"keep me")
    for call in (lambda: resize_lora(src, out, rank=2), lambda: merge_loras([(src, 1.0)], out),
                 lambda: merge_into_checkpoint([(src, 1.0)], base_file, out, config=folder),
                 lambda: extract_lora(base_file, base_file, out, rank=2, config=folder)):
        with pytest.raises(LoraToolError, match="already exists: lorakit never overwrites"):
            call()
        assert out.read_bytes() == b"keep me"
    with pytest.raises(LoraToolError, match="also an input"):
        merge_into_checkpoint([(src, 1.0)], base_file, base_file.with_name(base_file.name), config=folder)


# ---- the CLI -----------------------------------------------------------------------------------------------
def test_cli_runs_each_tool_and_refuses_in_one_line(locon, single_files, tmp_path, capsys):
    from lorakit.cli.lora import parse_weighted
    from lorakit.cli.main import main

    src, deltas = locon
    base_file, folder = single_files["sd1"]
    assert parse_weighted("C:\\loras\\a.safetensors:0.5") == (Path("C:\\loras\\a.safetensors"), 0.5)
    assert parse_weighted("C:\\a.safetensors")[1] == 1.0
    assert main(["lora", "inspect", str(src), "--heatmap", str(tmp_path / "h.png")]) == 0
    assert "LoCon" in capsys.readouterr().out and (tmp_path / "h.png").is_file()
    r2 = tmp_path / "r2.safetensors"
    assert main(["lora", "resize", str(src), str(r2), "--rank", "2", "--precision", "float"]) == 0
    assert "resize (fixed): r2.safetensors written" in capsys.readouterr().out
    both = tmp_path / "both.safetensors"
    assert main(["lora", "merge", str(both), f"{src}:0.5", f"{r2}:0.5", "--precision", "float"]) == 0
    assert set(file_deltas(both)) == set(deltas)
    ckpt = tmp_path / "ckpt.safetensors"
    assert main(["lora", "merge", str(ckpt), str(src), "--into", str(base_file), "--config", str(folder)]) == 0
    ex = tmp_path / "ex.safetensors"
    assert main(["lora", "extract", str(ckpt), str(base_file), str(ex), "--rank", "4", "--config", str(folder)]) == 0
    assert ex.is_file()
    capsys.readouterr()
    assert main(["lora", "resize", str(src), str(r2), "--rank", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "already exists" in err and err.count("\n") == 1


def test_notebook_form_resizes_the_chosen_lora_into_a_free_name(locon, tmp_path):
    from lorakit.lora.tools.common import free_path
    from lorakit.ui.lora_tools import ResizeForm

    src, deltas = locon
    form = ResizeForm(rank=2)
    assert form.values() == {"rank": 2, "method": "fixed", "param": None, "precision": "fp16"}
    form.method.value, form.param.value = "sv_fro", 0.95
    first = resize_lora(src, free_path(tmp_path / "lora-tools", "locon-r2.safetensors"), **form.values())
    again = resize_lora(src, free_path(tmp_path / "lora-tools", "locon-r2.safetensors"), **form.values())
    assert (first.output.name, again.output.name) == ("locon-r2.safetensors", "locon-r2-1.safetensors")
    assert {m.new_rank for m in again.modules} <= {1, 2} and set(file_deltas(again.output)) == set(deltas)


# ---- bundled words (pivotal tuning) ---------------------------------------------------------------------------
def _with_word(src, out, word, vectors):
    sd = load_file(str(src))
    sd[f"bundle_emb.{word}.string_to_param.*"] = vectors
    save_file(sd, str(out), metadata={"ss_network_module": "networks.lora"})
    return out


def test_bundled_words_survive_resize_and_merge_and_are_named_for_a_checkpoint(sd1, locon, single_files, tmp_path):
    src, _ = locon
    width = sd1.pipe.text_encoder.get_input_embeddings().embedding_dim
    vec = torch.randn(2, width)
    a = _with_word(src, tmp_path / "a.safetensors", "zkx", vec)
    assert inspect_lora(a).bundled_words == ["zkx"] and "bundled words (textual inversion): zkx" in inspect_lora(a).format()

    report = resize_lora(a, tmp_path / "a2.safetensors", 2)
    sd = load_file(str(tmp_path / "a2.safetensors"))
    assert torch.equal(sd["bundle_emb.zkx.string_to_param.*"], vec.to(sd["bundle_emb.zkx.string_to_param.*"].dtype))
    assert "zkx carried over unchanged" in report.format()

    b = _with_word(src, tmp_path / "b.safetensors", "qwy", torch.randn(1, width))
    report = merge_loras([(a, 0.5), (b, 0.7)], tmp_path / "ab.safetensors")
    sd = load_file(str(tmp_path / "ab.safetensors"))
    assert torch.equal(sd["bundle_emb.zkx.string_to_param.*"], vec), "a merge weight does not scale a word"
    assert "bundle_emb.qwy.string_to_param.*" in sd and "zkx, qwy" not in report.notes[0]
    assert "qwy, zkx carried over" in report.notes[0]

    clash = _with_word(src, tmp_path / "c.safetensors", "zkx", vec + 1)
    with pytest.raises(LoraToolError, match="both bundle the word 'zkx'"):
        merge_loras([(a, 1.0), (clash, 1.0)], tmp_path / "never.safetensors")
    assert not (tmp_path / "never.safetensors").exists()
    merge_loras([(a, 1.0), (a, 0.5)], tmp_path / "aa.safetensors")  # the same vectors twice: carried once

    base_file, folder = single_files["sd1"]
    report = merge_into_checkpoint([(a, 1.0)], base_file, tmp_path / "m.safetensors", config=folder)
    assert any("zkx not in the checkpoint" in n for n in report.notes)
    assert not any(k.startswith("bundle_emb") for k in load_file(str(tmp_path / "m.safetensors")))
