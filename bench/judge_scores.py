"""The generic scores (lorakit.evaluate.scoring): what they cost, what they draw, and whether they agree with the
toy scorer.

    OMP_NUM_THREADS=1 python bench/judge_scores.py speed            # seconds each score adds per cell, on CPU
    OMP_NUM_THREADS=1 python bench/judge_scores.py draws            # extra images for a 4 × 3 grid, before/after
    OMP_NUM_THREADS=1 python bench/judge_scores.py rank --project demo-project --prompts 12  # vs the toy scorer

speed: random-weight models of the real architectures (CLIP ViT-B/32 as openai/clip-vit-base-patch32,
  DINOv2-small as facebook/dinov2-small, at 224 px): the same arithmetic as the downloaded weights. Per cell =
  per image of a checkpoint × strength, batch of 16, warm-up excluded; one edited prompt per cell.
draws: a 4 checkpoints × 3 strengths grid of a real-photo prompt. Before: seeds 1-8 of every cell were drawn for
  the scores whatever the prompt (12 × 8 − 12 already in the grid). After: what ``scoring_cells`` asks for.
rank: a demo project trained by ``lorakit demo DIR`` (a checkpoint every 4 epochs; data/demo/README.md's figures
  are from the earlier 24-epoch recipe). A tiny CLIP is trained
  here on toy-world scenes and captions (random models know nothing, and no hub is reached); the concept's word
  ``blicket`` never appears in its captions, as a user's trigger word is unknown to a real CLIP. The CLIP's image
  tower matches colours, not shapes (nearest neighbours: colour 0.99, shape 0.42), so likeness uses a tiny image
  model trained here to tell shapes apart (a ResNet, the stand-in for DINOv2), never shown a cross (``--image
  none``: CLIP's tower). For every checkpoint × strength, the same images (demo eval prompts × seeds, plus the
  colour and background edits) are scored by the toy scorer and by EmbeddingScorer; the Spearman rank correlation
  of likeness, adaptability and the pick score over the choices is printed.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lorakit.demo import toyworld as tw  # noqa: E402
from lorakit.evaluate import judge  # noqa: E402
from lorakit.evaluate.grid_spec import Cell, GridSpec, parse_axis  # noqa: E402
from lorakit.evaluate.scoring import (  # noqa: E402
    EmbeddingScorer,
    ScoringModels,
    adaptability_prompts,
    build_tiny_clip,
    load_encoders,
)
from lorakit.models.loading import DEMO_MODEL_DIR  # noqa: E402
from lorakit.project import Project  # noqa: E402


# ---- speed ------------------------------------------------------------------------------------------------
def real_size_models(root: Path) -> tuple[Path, Path]:
    """Random CLIP ViT-B/32 and DINOv2-small folders (architecture as the hub's, weights random)."""
    from transformers import (
        BitImageProcessorPil,
        CLIPConfig,
        CLIPImageProcessorPil,
        CLIPModel,
        CLIPProcessor,
        Dinov2Config,
        Dinov2Model,
    )

    clip_dir, dino_dir = root / "clip-b32", root / "dinov2-small"
    tiny = build_tiny_clip(root / "tok", ("photo", "of", "zkx"))  # its tokenizer; the model is replaced
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny)
    cfg = CLIPConfig(text_config={"vocab_size": max(49408, len(tok))}, vision_config={"patch_size": 32},
                     projection_dim=512)
    CLIPModel(cfg).save_pretrained(clip_dir)
    CLIPProcessor(image_processor=CLIPImageProcessorPil(), tokenizer=tok).save_pretrained(clip_dir)
    Dinov2Model(Dinov2Config(hidden_size=384, num_attention_heads=6, patch_size=14, image_size=518)
                ).save_pretrained(dino_dir)
    BitImageProcessorPil(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224},
                         image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]).save_pretrained(dino_dir)
    return clip_dir, dino_dir


def bench_speed(n: int = 32) -> None:
    from PIL import Image

    rng = random.Random(0)
    images = [Image.new("RGB", (512, 512), tuple(rng.randrange(256) for _ in range(3))) for _ in range(n)]
    train = images[:16]
    with tempfile.TemporaryDirectory() as tmp:
        clip_dir, dino_dir = real_size_models(Path(tmp))
        paths = []
        for i, im in enumerate(train):
            paths.append(Path(tmp) / f"{i:03d}.png")
            im.save(paths[-1])
        for label, image_model in (("CLIP ViT-B/32 only", ""), ("CLIP ViT-B/32 + DINOv2-small", str(dino_dir))):
            enc = load_encoders(ScoringModels(clip=str(clip_dir), image=image_model))
            edit = adaptability_prompts(["photo of zkx, black hair"], ["zkx"])[0]
            scorer = EmbeddingScorer(enc, paths, [edit])
            for warm in (True, False):
                cells = [Cell(edit.prompt, "", i + (0 if warm else 10_000), 7.0, 20, "Euler a", None, 0.0)
                         for i in range(n)]
                t0 = time.perf_counter()
                like = enc.images(images)
                t1 = time.perf_counter()
                enc.clip_images(images)
                enc.texts([edit.prompt, edit.original])
                t2 = time.perf_counter()
                scorer.score_images(cells, images)
                t3 = time.perf_counter()
            print(f"{label}: likeness {1000 * (t1 - t0) / n:.1f} ms/cell, adaptability (CLIP image + text) "
                  f"{1000 * (t2 - t1) / n:.1f} ms/cell, whole score + copy check {1000 * (t3 - t2) / n:.1f} ms/cell "
                  f"(embedding {like.shape[1]}-d, {torch.get_num_threads()} thread(s))")


# ---- draws -----------------------------------------------------------------------------------------------
def bench_draws() -> None:
    from lorakit.demo.judging import toy_scorer

    with tempfile.TemporaryDirectory() as tmp:
        project = Project.create(Path(tmp) / "p")
        for name in ("zkx-000002", "zkx-000004", "zkx-000006", "zkx"):
            (project.output_dir / f"{name}.safetensors").write_bytes(b"")
        (project.dataset_dir / "10_zkx").mkdir(parents=True)
        (project.dataset_dir / "10_zkx" / "a.txt").write_text("photo of zkx, black hair, white shirt")
        spec = GridSpec(prompt="photo of zkx, black hair, smiling", x=parse_axis("checkpoint", project),
                        y=parse_axis("strength=1,0.75,0.5"))
        grid = 4 * 3
        print(f"4 x 3 real-photo grid: {grid} cells")
        print(f"  before: seeds 1-8 for every cell, whatever the prompt: {grid * 8} images, {grid * 8 - grid} beyond "
              "the grid (and an empty table)")
        toy = judge.scoring_cells(spec, project, toy_scorer(project), adaptability_prompts(["photo of zkx"], ["zkx"]),
                                  extra_seeds=3)
        print(f"  after, no CLIP (toy scorer; prompts unscorable), even with 3 extra seeds: {len(toy)} images")

        class AnyPrompt:
            def can_score(self, prompt: str) -> bool:
                return True

        edits = adaptability_prompts(project)
        for extra in (0, 1):
            cells = judge.scoring_cells(spec, project, AnyPrompt(), edits, extra_seeds=extra)
            print(f"  after, with CLIP, {len(edits)} adaptability prompts, {extra} extra seed(s): {len(cells)} images "
                  f"judged, {len(cells) - grid} beyond the grid")
        cells = judge.scoring_cells(spec, project, AnyPrompt(), [], extra_seeds=0)
        print(f"  after, with CLIP, no adaptability prompts: {len(cells) - grid} beyond the grid (likeness only)")


# ---- rank ------------------------------------------------------------------------------------------------
def train_toy_clip(folder: Path, steps: int = 1000, batch: int = 128, seed: int = 0) -> Path:
    """A tiny CLIP trained contrastively on toy scenes ('a red cross on a blue background'); saved to ``folder``."""
    from transformers import AutoProcessor, CLIPModel

    words = ["a", "an", "on", "background", *tw.COLORS, *tw.ALL_SHAPES]
    build_tiny_clip(folder, words, seed=seed, hidden=64, layers=2, patch=4)
    processor = AutoProcessor.from_pretrained(folder)
    model = CLIPModel.from_pretrained(folder)
    torch.manual_seed(seed)
    pool = [tw.scene_from_seed(100_000 + i, shapes=tw.ALL_SHAPES, held_out=None) for i in range(6000)]
    pixels = processor(images=[tw.render(s, tw.NATIVE_SIZE) for s in pool], return_tensors="pt")["pixel_values"]
    tokens = processor(text=[s.caption() for s in pool], return_tensors="pt", padding=True)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    t0 = time.perf_counter()
    for step in range(steps):
        idx = torch.randint(len(pool), (batch,))
        out = model(input_ids=tokens["input_ids"][idx], attention_mask=tokens["attention_mask"][idx],
                    pixel_values=pixels[idx])
        same = torch.tensor([[pool[i].caption() == pool[j].caption() for j in idx] for i in idx], dtype=torch.float)
        target = same / same.sum(dim=1, keepdim=True)  # duplicates of a caption in a batch share the credit
        loss = (torch.nn.functional.cross_entropy(out.logits_per_image, target)
                + torch.nn.functional.cross_entropy(out.logits_per_text, target)) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0 or step == steps - 1:
            print(f"  toy CLIP step {step}: loss {loss.item():.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    model.save_pretrained(folder)
    return folder


def train_toy_image_model(folder: Path, steps: int = 1500, batch: int = 128, seed: int = 0,
                          unseen: tuple[str, ...] = (tw.CONCEPT_SHAPE,)) -> Path:
    """A tiny image encoder (a ResNet, through transformers as any image model) trained on toy scenes to tell
    objects apart whatever their colours (supervised contrastive loss on the shape): the stand-in for what DINOv2
    features do for real subjects. The concept's shape is left out of its training, as a user's subject is unknown
    to a real image model."""
    from transformers import AutoImageProcessor, ResNetConfig, ResNetModel

    try:
        from transformers import BitImageProcessorPil as ImageProcessor
    except ImportError:
        from transformers import BitImageProcessor as ImageProcessor
    torch.manual_seed(seed)
    model = ResNetModel(ResNetConfig(embedding_size=32, hidden_sizes=[32, 64, 128], depths=[1, 1, 1],
                                     layer_type="basic", downsample_in_first_stage=False))
    ImageProcessor(size={"shortest_edge": tw.NATIVE_SIZE},
                   crop_size={"height": tw.NATIVE_SIZE, "width": tw.NATIVE_SIZE}).save_pretrained(folder)
    processor = AutoImageProcessor.from_pretrained(folder)
    shapes = [s for s in tw.ALL_SHAPES if s not in unseen]
    pool = [tw.scene_from_seed(200_000 + i, shapes=shapes, held_out=None) for i in range(6000)]
    pixels = processor(images=[tw.render(s, tw.NATIVE_SIZE) for s in pool], return_tensors="pt")["pixel_values"]
    labels = torch.tensor([shapes.index(s.shape) for s in pool])
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    t0 = time.perf_counter()
    for step in range(steps):
        idx = torch.randint(len(pool), (batch,))
        z = torch.nn.functional.normalize(model(pixel_values=pixels[idx]).pooler_output.flatten(1), dim=-1)
        logits = z @ z.T / 0.1
        logits = logits - torch.eye(batch) * 1e9  # an image is not its own positive
        same = (labels[idx][:, None] == labels[idx][None, :]).float() - torch.eye(batch)
        log_prob = logits.log_softmax(dim=1)
        loss = -((log_prob * same).sum(1) / same.sum(1).clamp(min=1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0 or step == steps - 1:
            print(f"  toy image model step {step}: loss {loss.item():.3f} ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
    model.save_pretrained(folder)
    return folder


def spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def bench_rank(project_dir: Path, clip_steps: int, n_prompts: int, seeds: int, strengths: list[float],
               clip_dir: str = "", image_dir: str = "") -> None:
    from lorakit.demo.judging import toy_scorer
    from lorakit.evaluate.generate import Generator
    from lorakit.evaluate.grid import render_cells

    project = Project(project_dir)
    ckpts = project.checkpoints()
    assert ckpts, f"no checkpoints in {project.output_dir}: run `lorakit demo {project_dir}` first"
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        have = bool(clip_dir) and (Path(clip_dir) / "config.json").is_file()
        clip = Path(clip_dir) if have else train_toy_clip(Path(clip_dir or Path(tmp) / "toy-clip"), steps=clip_steps)
        print(f"toy CLIP {'from ' + clip_dir if have else 'trained'} in {time.perf_counter() - t0:.0f} s")
        image = ""
        if image_dir != "none":
            t0 = time.perf_counter()
            have = bool(image_dir) and (Path(image_dir) / "config.json").is_file()
            image = str(image_dir if have else train_toy_image_model(Path(image_dir or Path(tmp) / "toy-image")))
            print(f"toy image model {'from ' + image_dir if have else 'trained'} in {time.perf_counter() - t0:.0f} s")
        enc = load_encoders(ScoringModels(clip=str(clip), image=image))
        prompts = [e.prompt(tw.TRIGGER) for e in tw.concept_eval_set(n_prompts, seed=11)]
        edits = [e for p in prompts for e in adaptability_prompts([p], [tw.TRIGGER], ("colour", "background"))]
        scorer = EmbeddingScorer(enc, judge.training_images(project), edits)
        toy = toy_scorer(project)
        cells = [Cell(p, "", s, 4.0, 25, "Euler a", str(c), st) for c in ckpts for st in strengths
                 for p in [*prompts, *(e.prompt for e in edits)] for s in range(1, seeds + 1)]
        gen = Generator(str(DEMO_MODEL_DIR))
        t0 = time.perf_counter()
        rendered = render_cells(gen, cells, batch_size=32, progress=True)
        print(f"{rendered.generated} images in {time.perf_counter() - t0:.0f} s")
        pairs = [(c, rendered.images[c.image_key()]) for c in cells]
        reference = judge.score_pairs(pairs, toy)
        order = [p.stem for p in ckpts]
        print("toy pick:", judge.suggestion(reference, judge.pick_best(reference, order)))
        t0 = time.perf_counter()
        generic = judge.score_pairs(pairs, scorer)
        print(f"scored in {time.perf_counter() - t0:.1f} s")
        report_agreement(generic, reference, strengths, order)


def report_agreement(generic, reference, strengths, order) -> None:
    print(f"{'checkpoint':<16} strength   toy L   toy A   gen L   gen A  copies")
    for g, r in zip(generic, reference, strict=True):
        print(f"{g.checkpoint:<16} {g.strength:8g}  {r.likeness:6.2f}  {r.adaptability:6.2f}  {g.likeness:6.2f}  "
              f"{g.adaptability:6.2f}  {len(g.copies)}")
    for name, f in (("likeness", lambda c: c.likeness), ("adaptability", lambda c: c.adaptability),
                    ("pick score", lambda c: c.score)):
        print(f"spearman {name} over all {len(reference)} cells: "
              f"{spearman([f(c) for c in reference], [f(c) for c in generic]):.3f}")
    for st in strengths:
        toy_l = [c.likeness for c in reference if c.strength == st]
        gen_l = [c.likeness for c in generic if c.strength == st]
        print(f"spearman likeness over checkpoints at strength {st:g}: {spearman(toy_l, gen_l):.3f}")
    print("generic pick:", judge.suggestion(generic, judge.pick_best(generic, order)).split("; epoch")[0])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["speed", "draws", "rank"])
    p.add_argument("--project", default="demo-project")
    p.add_argument("--clip-steps", type=int, default=1000)
    p.add_argument("--clip", default="", help="a toy CLIP folder: used if it holds one, else one is trained into it")
    p.add_argument("--image", default="", help="a toy image-model folder: used if it holds one, else one is trained "
                                               "into it; 'none' = CLIP's image tower for likeness")
    p.add_argument("--prompts", type=int, default=6)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--strengths", default="1,0.5")
    a = p.parse_args()
    if a.what == "speed":
        bench_speed()
    elif a.what == "draws":
        bench_draws()
    else:
        bench_rank(Path(a.project), a.clip_steps, a.prompts, a.seeds, [float(s) for s in a.strengths.split(",")],
                   a.clip, image_dir=a.image)


if __name__ == "__main__":
    main()
