# %% [markdown]
# # 0 · Setup check
#
# Before training, make sure this machine can do it: a GPU and its memory, bf16 support, free disk space,
# the libraries lorakit relies on, and a base model it can open. Each row says what was found and, when
# something is missing, what to do.
#
# Nothing here downloads anything unless you ask (`DOWNLOAD`). With no settings, the notebooks use the **demo**:
# a small dataset and a small base model that ship with lorakit, so every step runs on a laptop CPU in minutes.

# %% tags=["parameters"]
PROJECT = "../demo-project"  # the folder all five notebooks share
BASE_MODEL = ""  # empty = the demo model; or a diffusers folder, or a .safetensors file from A1111's models folder
DOWNLOAD = False  # True: a hub id (owner/name) as BASE_MODEL may download from the Hugging Face hub

# %%
from IPython.display import display

from lorakit.doctor import run_checks
from lorakit.models.loading import base_model_from_env
from lorakit.project import Project
from lorakit.ui.setup import doctor_table, setup_form

project = Project.from_env(PROJECT)
BASE_MODEL = base_model_from_env(BASE_MODEL)

# %% [markdown]
# Where is your base model, and where should the project live? Edit the boxes and rerun the next cell.

# %%
form, model_box, project_box = setup_form(BASE_MODEL, str(project.root))
display(form)

# %% [markdown]
# Already use AUTOMATIC1111, Forge or ComfyUI? Their checkpoints are listed here (from the usual install places,
# or `LORAKIT_WEBUI_DIR` / `LORAKIT_COMFYUI_DIR`): choosing one fills the base model box. A hub id
# (`owner/name`) downloads only with the box ticked, showing progress and where the files went.

# %%
from lorakit.ui.user_folders import CheckpointPicker

picker = CheckpointPicker(model_box, download=DOWNLOAD)
display(picker.widget)

# %%
rows = run_checks(model_box.value, project_box.value, download=picker.download.value)
doctor_table(rows)

# %% [markdown]
# **Reading the table.** `FAIL` stops training; `WARN` works with care (for example: on a CPU the demo runs,
# but a real SD 1.5 model needs a CUDA GPU with 6 GB or more); `INFO` rows are optional extras.
#
# Next: **01 · dataset and captions**.

# %%
failed = [r for r in rows if r.status == "fail"]
assert not failed, "fix these first: " + "; ".join(f"{r.check}: {r.advice}" for r in failed)
print(f"setup ok: {len(rows)} checks, project at {project.root}")
