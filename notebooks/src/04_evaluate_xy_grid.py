# %% [markdown]
# # 4 · Evaluate: which checkpoint, at which strength?
#
# Training wrote a checkpoint every few epochs (`output/<name>-000001.safetensors`, …, `<name>.safetensors`).
# They differ, and the last one is not always the best. This step draws an **X/Y grid** — the checkpoints
# across, LoRA strengths down — as AUTOMATIC1111's X/Y/Z plot does, and helps you read it.
#
# ## How to judge: likeness and adaptability
# - **Likeness**: the concept appears. Your character looks like your character; the demo's new shape (the
#   trigger word `blicket`) is drawn as the plus-shaped cross it was shown.
# - **Adaptability**: the rest of the prompt still steers it. Ask for *red hair* and the hair turns red; ask the
#   demo for *a yellow blicket on a green background* and you get a yellow one on green — including colour
#   pairs that were never in the training images.
#
# Both matter, and they pull in opposite directions:
# - **Underfit** (early checkpoints, low strength): adaptable but without likeness — the concept is missing or
#   vague. Train longer, or use a higher strength.
# - **Overfit** (late checkpoints, high strength): likeness, but the prompt stops working — every image copies
#   the training images (same colours, same pose, same background), details "fry" into noise or harsh
#   contrast. Take an earlier checkpoint, or a lower strength.
# - The good cell is the **first** checkpoint (and the lowest strength) where the concept is clearly there while
#   the prompt still steers it. A LoRA used at 0.7–0.8 in practice should look right in that row.
#
# Further down: scores in each cell (with a CLIP model for your own photos, built in for the demo's toy world),
# a "does it do anything?" check, the nearest training image to any cell (copying = overfitting), and the same
# grid ready for AUTOMATIC1111 and ComfyUI.

# %% tags=["parameters"]
PROJECT = "../demo-project"
BASE_MODEL = ""  # empty = what lorakit.toml says (the demo model by default)
DOWNLOAD = False  # True: a hub id (owner/name) as base model or scoring model may download from the Hugging Face hub
SCORING_CLIP = ""  # a CLIP model to score any prompt, e.g. openai/clip-vit-base-patch32; "" = toy-world prompts only
SCORING_IMAGE = ""  # an image model for likeness, e.g. facebook/dinov2-small; "" = CLIP's image tower
EXPORT_TO = "auto"  # copy the chosen LoRA: "auto" = your A1111/Forge/ComfyUI LoRA folder; a folder; "" = no

# %%
from IPython.display import display

from lorakit.demo.judging import project_scorer
from lorakit.demo.recipe import notebook_setup
from lorakit.evaluate import judge
from lorakit.evaluate.generate import Generator
from lorakit.evaluate.grid import make_grid
from lorakit.evaluate.grid_spec import build_spec
from lorakit.evaluate.scoring import adaptability_prompts
from lorakit.ui.grid import AdaptabilityForm, CellPicker, GridForm

project, cfg, _ = notebook_setup(PROJECT, BASE_MODEL)
base_model = cfg.model.base_model
checkpoints = project.checkpoints()
assert checkpoints, f"no checkpoints in {project.output_dir}: run notebook 03 (train) first"
print(f"{len(checkpoints)} checkpoints:", ", ".join(p.stem for p in checkpoints))

# %%
from lorakit.models.loading import NOTEBOOK_RETRY, fetch_hub_model

snapshot = fetch_hub_model(cfg.model.base_model, download=DOWNLOAD, retry=NOTEBOOK_RETRY)  # hub ids only

# %% [markdown]
# ## The grid
# Axes can be any of: **checkpoint** (all of them, or `name-000002,name`), **strength** (`1,0.75,0.5`),
# **prompt** (Prompt S/R: the first value is searched in the prompt, each value replaces it in turn), **seed**,
# **cfg**, **steps**, **sampler** (`Euler a|DPM++ 2M Karras|DDIM`). **Z** makes one grid per value. The prompt,
# steps, CFG and sampler start as training's sample settings. Edit the form, then run the cells below it.

# %%
form = GridForm(project, cfg)
form.widget

# %% [markdown]
# The model stays loaded between runs; each checkpoint is loaded once and switching only swaps adapter weights.
# Cells that share a checkpoint and strength are drawn in one batch, and identical cells (every strength-0
# cell is the base model's image) only once. The same settings give the same pixels: rerun and compare.
#
# ### Scores: likeness and adaptability
# With **SCORING_CLIP** set (first cell; a hub id downloads once with `DOWNLOAD = True`, then comes from the local
# cache), any prompt is scored with open models: **likeness** = how close a cell's image is to your training images
# (DINOv2 or CLIP image embeddings: the mean cosine similarity to its 3 nearest, over the training images' own,
# 1.0 = as close as they are to each other); **adaptability** = for each prompt below (your caption with one
# attribute changed — colour, clothing, background, style, medium: the "red hair" test), whether CLIP finds the
# image closer to the edited prompt than to the caption (the fraction followed); the **copy check** names the
# nearest training image and flags a cosine similarity of 0.95 or more. Without SCORING_CLIP only the demo's
# toy-world prompts are scored (its own analytic scorer), and a grid of other prompts draws nothing for scores.
#
# The scores use the grid's own images plus the adaptability prompts at each checkpoint × strength; **extra
# seeds** (form) draws all of them again per seed — one seed is a coin toss, each seed costs as many images again.
# Edit the prompts below (one a line; empty = none), then run the grid cell.

# %%
adapt_form = AdaptabilityForm(adaptability_prompts(project))
adapt_form.widget

# %% [markdown]
# Under each cell: **L** = likeness, **A** = adaptability (toy world: shape drawn; colour and background as asked).
# The orange frame marks the suggested cell: the weaker of the two scores decides; ties go to the cell whose
# neighbours (the checkpoints before and after, the strengths above and below) also score well — a lone good cell
# may be luck — and then to less training and lower strength. The curve below shows both scores over the
# checkpoints at the suggested strength: likeness rises while it underfits, adaptability falls when it overfits.

# %%
gen = Generator(base_model)
spec = build_spec(project, **form.values())
edits = adapt_form.edits()
scorer = project_scorer(project, SCORING_CLIP, SCORING_IMAGE, edits, download=DOWNLOAD) if form.scores.value else None
drawn = {}  # what the scores draw, the grid reuses
sweep = judge.score_grid(gen, spec, project, scorer, edits, form.extra_seeds.value, progress=True,
                         cache=drawn) if scorer else None
choices = sweep.choices if sweep else []
order = [p.stem for p in checkpoints]
best = judge.pick_best(choices, order=order)
result = make_grid(project, spec, generator=gen, annotate=scorer.annotate if scorer else None,
                   best=judge.best_cell(project, best) if best else None, progress=True, cache=drawn)
print(result.summary())
for grid, path in zip(result.grids, result.paths):
    print(path)
    display(grid)
if scorer:
    print(f"scores: {sweep.generated} images drawn beyond the grid's")
    print(judge.choices_table(choices, best) if choices else "")
    print(judge.suggestion(choices, best))
if best:
    display(judge.fit_curve(choices, best.strength, order, best))

# %% [markdown]
# ## The validation loss, beside the grid
# With `validation.enabled` (notebook 02), training measured the loss on images it never trained on — the same
# images and the same noise at every checkpoint, so the checkpoints are compared on equal terms; the star marks the
# checkpoint where it bottoms out. It measures how well the LoRA reconstructs unseen images, not whether it draws
# the concept: in the demo's toy world (a 24-epoch run) it bottomed out at epoch 8 while the pictures kept improving
# to the last epoch (data/demo/README.md). Read a loss that climbs steeply as a warning, and pick with the grid and its scores.

# %%
from lorakit.evaluate.validation import checkpoint_losses, read_validation, validation_figure

validation_rows = checkpoint_losses(read_validation(project))
validation_figure(validation_rows)

# %% [markdown]
# ## Does it do anything?
# For each checkpoint: the mean pixel difference between strength 0 (the base model) and strength 1, on fixed seeds
# (images the grid and the scores already drew are reused). **No effect** (near 0) means the LoRA is not doing its
# job — often a wrong network alpha (alpha 1 with a high rank needs a much higher learning rate), too little
# training, or a prompt without the trigger word. **Extreme** means it replaces the image wholesale, as a fried,
# over-trained LoRA does.

# %%
effects = judge.lora_effect(gen, checkpoints, spec.prompt, seeds=(1, 2, 3, 4), triggers=judge.trigger_words(project),
                            cache=result.rendered, steps=spec.steps, cfg=spec.cfg, sampler=spec.sampler,
                            negative_prompt=spec.negative_prompt)
print(judge.effect_table(effects))

# %% [markdown]
# ## Look closely: is it copying the training set?
# Choose a cell (by default the suggested one); beside it are the training images closest to it (by their
# downscaled pixels; `d` = mean difference, 0 = an exact copy). Near-copies across many seeds and prompts are
# overfitting: the LoRA memorised images instead of learning the concept.

# %%
picker = CellPicker(result, spec, default=result.best)
picker.widget

# %%
image = picker.image()
display(judge.side_by_side(image, judge.nearest_training_images(image, project, k=3), title="cell"))

# %% [markdown]
# ## Take it elsewhere
# Beside each grid PNG (which carries the generation parameters as AUTOMATIC1111's PNG Info reads them) are:
# - `<grid>.a1111.txt`: the prompt, settings and **X/Y/Z plot "Prompt S/R" values** to paste into AUTOMATIC1111
#   or Forge (copy the LoRA files into `models/Lora/` first);
# - `<grid>.comfyui.json`: a **ComfyUI workflow** (API format) with one branch per cell:
#   CheckpointLoaderSimple → LoraLoader (strength_model / strength_clip) → CLIPTextEncode → KSampler → VAEDecode
#   → SaveImage. Load it in ComfyUI (or POST it to `/prompt`).
#
# Other tools make their starting noise differently, so the images match in spirit, not pixel for pixel.

# %%
print(result.exports[0].read_text())
print("ComfyUI workflow:", result.exports[1])

# %% [markdown]
# ## Into your AUTOMATIC1111, Forge or ComfyUI
# The LoRA of the cell chosen above (by default the suggested one) is copied into your install's LoRA folder
# (`models/Lora`, ComfyUI: `models/loras`) — never over a file already there: a taken name becomes `name-1`, … —
# with the card A1111's Lora tab reads (`<name>.json`): the trigger word as *activation text*, the cell's strength
# as *preferred weight*, and the SD version. `EXPORT_TO` (first cell) chooses the folder; the demo's LoRA is not
# copied unless you name one. On the command line: `lorakit export PROJECT [--lora FILE] [--to DIR] [--strength S]`.

# %%
from lorakit.evaluate.export import export_choice

k, j, i = picker.chosen()
exported = export_choice(project, result.cells[k][j][i], EXPORT_TO, base_model)
print(exported.summary())

# %% [markdown]
# ## Inside the LoRA: what it learned, and a smaller file
# The chosen LoRA (the last checkpoint when the chosen cell is the base model) described: network type, rank and
# alpha, the training recipe stored in the file, and **‖ΔW‖ per block** — which UNet blocks (IN, MID, OUT, as the
# LoRA Block Weight extension names them) and text-encoder layers (TE) changed most. Then a **resize** to a lower
# rank by SVD: a fixed rank, or per module by sd-scripts' rules (`sv_fro 0.9` keeps 90 % of each ΔW's Frobenius
# norm). The relative error says what the smaller file loses; put it in the grid above (as a checkpoint) to see it.
# It is written to `lora-tools/` in the project, never over a file. Command line: `lorakit lora inspect | resize |
# merge | extract` (see the README).

# %%
from pathlib import Path

from IPython.display import Image

from lorakit.lora.tools import inspect_lora, resize_lora
from lorakit.lora.tools.common import free_path
from lorakit.ui.lora_tools import ResizeForm

chosen = Path(result.cells[k][j][i].checkpoint or checkpoints[-1])
lora_report = inspect_lora(chosen)
print(lora_report.format())
blocks_png = free_path(project.root / "lora-tools", f"{chosen.stem}-blocks.png")
lora_report.heatmap(blocks_png)
display(Image(filename=str(blocks_png)))
tools_form = ResizeForm(rank=max(1, min(lora_report.ranks) // 2))
tools_form.widget

# %%
settings = tools_form.values()
resized = resize_lora(chosen, free_path(project.root / "lora-tools", f"{chosen.stem}-r{settings['rank']}.safetensors"),
                      **settings)
print(resized.format(limit=8))

# %%
missing = [p for p in result.paths + result.exports if not p.is_file()]
assert result.paths and not missing, f"the grid was not written: {missing or 'no grid'}"
assert exported.lora is None or exported.lora.is_file(), f"the LoRA was not copied: {exported.lora}"
assert resized.output.is_file() and lora_report.modules, f"the LoRA tools wrote nothing: {resized.output}"
print(f"grid: {result.paths[0]}  ({result.summary()})")
