# %% [markdown]
# # 2 · Hyperparameters
#
# This step writes the training recipe, `lorakit.toml`, into the project folder. Notebook 03 trains from it,
# and so does `lorakit train PROJECT` on the command line.
#
# Every setting in the form below has its one-line explanation beside it. The same text is the comment above
# each line of the saved `lorakit.toml`, and `lorakit config show` prints it too. You can start from:
# - **the project's current `lorakit.toml`**, or the demo's recipe if there is none yet;
# - **a preset**: *character*, *style*, or the *SD 2.1 Adafactor* recipe people share;
# - **a kohya_ss config**: paste the JSON from a web page (typographic quotes are fine) or give the file.
#
# After that, change anything you like.

# %% tags=["parameters"]
PROJECT = "../demo-project"  # the folder all five notebooks share
BASE_MODEL = ""  # empty = keep the config's base model (the demo model by default)
PRESET = ""  # optional: "character", "style" or "sd21-adafactor"
KOHYA_FILE = ""  # optional: the path of a kohya_ss GUI settings .json to start from

# %%
from lorakit.config.presets import describe_presets
from lorakit.config.schema import TrainConfig, advice
from lorakit.demo.recipe import notebook_setup

# %%
from IPython.display import HTML, display

from lorakit.config.presets import describe_recipe
from lorakit.train.steps import count_project, plan_steps
from lorakit.ui.hyperparameters import HyperparameterForm, lr_figure, steps_html

# %%
project, cfg, from_demo = notebook_setup(PROJECT, BASE_MODEL)
print(f"project: {project.root}\nstarting from: {'the demo recipe' if from_demo else 'lorakit.toml'}")

# %% [markdown]
# ## The settings that matter most
#
# **Rank and alpha** (`network.rank`, `network.alpha`). A LoRA adds to each layer a small update
# `up @ down`, where `down` squeezes the layer's input to *rank* numbers. A higher rank can hold more detail
# (and makes a bigger file): 8–32 is plenty for a character, 32–128 for a style. The update is multiplied by
# `alpha / rank` — so alpha is a second knob on the learning rate: `alpha = rank` leaves it alone,
# `alpha = 1` with rank 256 makes each step 256× smaller (recipes that do this use a high learning rate).
#
# **Learning rates** (`optimizer.unet_lr`, `optimizer.text_encoder_lr`). How far each step moves. The UNet
# draws; the text encoder reads the caption. 1e-4 for the UNet is kohya's default; the text encoder learns
# fast and overfits fast, so it usually gets half of that (or 0 to leave it frozen). Too high: images
# "burn" (harsh colours, the subject in every picture). Too low: nothing changes.
#
# **Schedulers** (`optimizer.lr_scheduler`). How the learning rate moves over the run: `constant` keeps
# it; `cosine` and `linear` lower it to 0 by the end, so the last steps refine; `polynomial` with power 1 is
# linear, higher powers drop faster; `cosine_with_restarts` climbs back up `num_cycles` times;
# `..._with_warmup` and every scheduler but `constant` start with `lr_warmup_steps` (or a fraction of the run,
# `lr_warmup_ratio`) of gentle steps. The plot further down shows your choice.
#
# **Steps**. One step = one batch. Steps = images × repeats × epochs ÷ batch size (÷ gradient accumulation).
# Published guides aim for about **1500–2000 steps for a character** and more for a style (3000–6000).
# Save a checkpoint every epoch or two and pick the best one in notebook 04: the last is not always best.
#
# The presets:

# %%
print(describe_presets())

# %% [markdown]
# ## The form
#
# Open a section, change values, then **run the next cells** (or press *Steps and LR preview* and *Save*).
# The line under the sections says at once whether the values work together, and why not; the line below it
# says how much GPU memory the setting needs ("needs about X GB of your Y GB", estimated without a GPU from one
# step of the real architecture) and, when it does not fit, the cheapest changes that make it fit.

# %%
form = HyperparameterForm(cfg, project, kind=PRESET, live_memory=True)
display(form.widget)

# %% [markdown]
# Already use AUTOMATIC1111, Forge or ComfyUI? Pick one of their checkpoints as the base model here (it fills
# the form's `base_model`; a `.ckpt` is marked *pickled* and also needs `allow_pickle`).

# %%
from lorakit.ui.user_folders import CheckpointPicker

display(CheckpointPicker(form.fields["model.base_model"][0]).widget)

# %% [markdown]
# The parameters cell can also start from a preset or a kohya_ss file, without clicking: set `PRESET` or
# `KOHYA_FILE` there. The import report lists what was **mapped**, what lorakit **does not support** (those
# settings would change training in kohya_ss — read them), and what was **ignored** and why.

# %%
if PRESET:
    form.apply_preset(PRESET)
if KOHYA_FILE:
    print(form.import_kohya(KOHYA_FILE).report())
cfg = form.value()
print("\n".join(f"note: {n}" for n in advice(cfg)) or "no warnings")
print(form.memory())

# %% [markdown]
# ## Steps per epoch
#
# Counted on the project's `dataset/` folders (regularization images double an epoch, as in kohya). The time
# column appears once this machine's speed is known: from a training run, or from *Measure speed per batch*,
# which loads the base model and times a few steps at batch 1, 2, 4 and 8 (a few seconds per size on a GPU).
# Below the table, a suggestion for your dataset's size, which *Use suggested repeats/epochs/batch* puts in the
# form:
# - **repeats and epochs**: the guides' 1500-2000 images seen for a character, 3000-6000 for a style, over
#   about ten epochs (fewer images get more repeats); the *minutes* box fits them to a time budget;
# - **the batch size**: the smallest one within 10% of the most images per second *measured* here (the fastest
#   when the time budget cuts the run; without measurements the batch stays as it is), no larger than your GPU holds (checked on this machine's GPU, or on
#   the card you give in *GPU GB*), and small enough to keep at least 300 optimizer steps: the same images in
#   fewer, larger steps teach less. When the batch changes, the learning rates change with it
#   (× √(new batch ÷ old batch) for AdamW and its kin);
# - the recipe's effective learning rate.

# %%
plan = plan_steps(cfg, count_project(cfg, project.root), kind=form.kind)
display(HTML(steps_html(plan, form.suggestion(), describe_recipe(cfg), cfg)))

# %% [markdown]
# ## Learning rate over the run
#
# Computed with the same scheduler code the trainer uses; grey lines mark the epochs.

# %%
lr_figure(cfg, plan.total_steps or 1000, plan.steps_per_epoch);

# %% [markdown]
# ## Save
#
# `lorakit.toml` is plain text: each setting has its explanation above it. Check a hand-edited file with
# `lorakit config check lorakit.toml`; share it with kohya_ss users via `lorakit config export-kohya`.

# %%
cfg = form.value()  # the latest values, in case the form changed since
path = cfg.save(project.config_path)
print(path.read_text(encoding="utf-8")[:1200])

# %% [markdown]
# Next: **03 · train**.

# %%
assert project.config_path.is_file(), f"{project.config_path} was not written"
assert TrainConfig.load(project.config_path) == cfg, "lorakit.toml does not load back to the form's values"
print(f"ok: {project.config_path}")
