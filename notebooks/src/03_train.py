# %% [markdown]
# # 3 · Train
#
# This step reads `lorakit.toml` (written by notebook 02) and the dataset (notebook 01) from the project
# folder and trains the LoRA. While it runs you see a progress bar (loss, learning rate, steps per second), a
# loss plot, and sample images every few epochs. A checkpoint is written every `save_every_n_epochs` epochs
# as `output/<name>-000001.safetensors`, … and the last one as `output/<name>.safetensors`: the files load
# unchanged in AUTOMATIC1111, ComfyUI and diffusers.
#
# **Interrupting is safe**: stop the kernel (■) and the training state is saved, with the weights so far as
# `output/<name>-interrupted.safetensors` to try in notebook 04 at once; tick *resume* below and run the
# training cell again to continue where it stopped. Resume continues the same run only: a changed rank, batch
# size, dataset or base model is refused with what changed. To carry a LoRA into a **new** run (other images,
# more epochs, a fresh schedule), pick it under *start from* instead (kohya's `network_weights`). Rerunning with
# other settings in the same kernel reuses the loaded model and the latent cache, so it starts at once.

# %% tags=["parameters"]
PROJECT = "../demo-project"
BASE_MODEL = ""  # empty = what lorakit.toml says (the demo model by default)
DOWNLOAD = False  # True: a hub id (owner/name) as base model may download from the Hugging Face hub
RESUME = False
MULTI_GPU = False  # True: one process per GPU through `accelerate launch`

# %%
import torch

from lorakit.demo.recipe import notebook_setup
from lorakit.train.launch import launch_training, result_from_project
from lorakit.train.loop import train
from lorakit.train.progress import SpeedRecorder, loss_figure, samples_sheet, summary
from lorakit.train.state import STATE_FILE
from lorakit.ui.train import LiveView, TrainForm

project, cfg, _ = notebook_setup(PROJECT, BASE_MODEL)

# %%
from lorakit.models.loading import NOTEBOOK_RETRY, fetch_hub_model

snapshot = fetch_hub_model(cfg.model.base_model, download=DOWNLOAD, retry=NOTEBOOK_RETRY)  # hub ids only

# %% [markdown]
# The settings people change most between runs. Every other setting is in notebook 02 (or `lorakit.toml`).

# %%
form = TrainForm(cfg, can_resume=(project.state_dir / STATE_FILE).is_file(), loras=project.checkpoints())
form.widget

# %% [markdown]
# **Start** — run this cell. The plot is the training loss: it is noisy by nature (each step sees another
# noise level); watch the smoothed line, and judge the result by the samples and by notebook 04, not by the loss.
# With `validation.enabled` (notebook 02) the red points are the **validation loss**: images held out of
# training, measured with the same noise at step 0 and at every checkpoint, so the points compare fairly. A
# curve that turns back up may mean overfitting, or only that the LoRA reconstructs unseen images' fine detail
# less well as it learns the concept: judge by notebook 04's grid, not by this curve alone.

# %%
view = LiveView()
speed = SpeedRecorder(form.value())  # remembers this machine's steps/s, for notebook 02's time estimate
if not MULTI_GPU:
    result = train(project, form.value(), callbacks=[view, speed], resume=RESUME or form.resume.value)

# %% [markdown]
# **Several GPUs?** Training in this kernel uses one device. With `MULTI_GPU = True` (first cell) this cell
# saves the settings and starts `accelerate launch` — the same training function, one process per GPU — and
# shows its output here (the cell above then does nothing).

# %%
if MULTI_GPU:
    form.value().save(project.config_path)
    launch_training(project.root, num_processes=torch.cuda.device_count(), resume=RESUME or form.resume.value)
    result = result_from_project(project, form.value().saving.output_name)

# %%
summary(result)

# %% [markdown]
# The loss of the whole run, and the samples drawn at the end of each epoch (one row per epoch): look for the
# epoch where the concept appears and the prompts still steer colour and background.

# %%
loss_figure(result.losses, validation=result.validation)

# %%
samples_sheet(result.samples, form.value().sampling.sample_prompts)

# %% [markdown]
# Each prompt on its own: a row per drawing (with `sampling.sample_at_start`, the base model first, as step 0)
# and a column per strength of `sampling.sample_strengths` (e.g. `[0.5, 1.0]`), always with the same seed, so
# only the LoRA changes from cell to cell. A concept that shows at 0.5 and no burn at 1.0 is a good epoch.

# %%
from lorakit.train.sampling import strength_sheets

for sheet in strength_sheets(project.samples_dir, form.value().sampling.sample_prompts,
                             form.value().saving.output_name, form.value().sampling.sample_strengths):
    display(sheet)

# %% [markdown]
# Next: **04 · evaluate** — compare the checkpoints at several strengths in an X/Y grid.

# %%
assert result.final is not None and result.final.is_file(), "training wrote no LoRA file"
assert not result.interrupted, "the run was interrupted: set RESUME = True (or tick resume) and run again"
print(f"{len(result.checkpoints)} checkpoints in {project.output_dir}")
