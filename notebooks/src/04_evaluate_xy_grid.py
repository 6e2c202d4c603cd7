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
# Further down: scores in each cell (for the demo's toy world), a "does it do anything?" check, the nearest
# training image to any cell (copying = overfitting), and the same grid ready for AUTOMATIC1111 and ComfyUI.

# %% tags=["parameters"]
PROJECT = "../demo-project"
BASE_MODEL = ""  # empty = what lorakit.toml says (the demo model by default)
DOWNLOAD = False  # True: a hub id (owner/name) as base model may download from the Hugging Face hub
EXPORT_TO = "auto"  # copy the chosen LoRA: "auto" = your A1111/Forge/ComfyUI LoRA folder; a folder; "" = no

# %%
from IPython.display import display

from lorakit.demo.judging import toy_annotator, toy_scorer
from lorakit.demo.recipe import notebook_setup
from lorakit.evaluate import judge
from lorakit.evaluate.generate import Generator
from lorakit.evaluate.grid import make_grid
from lorakit.evaluate.grid_spec import build_spec
from lorakit.ui.grid import CellPicker, GridForm

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
# One image per cell is a coin toss, so for prompts of the demo's toy world every checkpoint × strength is first
# scored over eight seeds; the grid then shows the first of them (the same images, not drawn again). Under each
# cell: **L** = likeness (the concept's shape is drawn), **A** = adaptability (in the colour and on the
# background asked for). The orange frame marks the suggested cell: the weaker of the two scores decides; ties go
# to the cell whose neighbours (the checkpoints before and after, the strengths above and below) also score well —
# a lone good cell may be luck — and then to less training and lower strength.

# %%
gen = Generator(base_model)
spec = build_spec(project, **form.values())
drawn = {}  # what the scores draw, the grid reuses
scored, scorer = form.scores.value, toy_scorer(project)
choices = judge.score_sweep(gen, spec, project, scorer, seeds=range(1, 9), progress=True, cache=drawn) if scored else []
best = judge.pick_best(choices, order=[p.stem for p in checkpoints])
result = make_grid(project, spec, generator=gen, annotate=toy_annotator(project) if scored else None,
                   best=judge.best_cell(project, best) if best else None, progress=True, cache=drawn)
print(result.summary())
for grid, path in zip(result.grids, result.paths):
    print(path)
    display(grid)
if scored:
    print(judge.choices_table(choices, best) if choices else "")
    print(judge.suggestion(choices, best))

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

# %%
missing = [p for p in result.paths + result.exports if not p.is_file()]
assert result.paths and not missing, f"the grid was not written: {missing or 'no grid'}"
assert exported.lora is None or exported.lora.is_file(), f"the LoRA was not copied: {exported.lora}"
print(f"grid: {result.paths[0]}  ({result.summary()})")
