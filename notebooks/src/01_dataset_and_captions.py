# %% [markdown]
# # 1 · Dataset and captions
#
# A LoRA learns what your images have in common, so the dataset *is* the training. This step copies your
# images into the project (your originals are never moved or changed), checks them, shows how the trainer
# will crop them, and helps you write their captions.
#
# **The words you will meet**
# - **Trigger token**: a rare word (`fr3dd!e`, `sks dog`, `blicket`) that will stand for your concept. Every
#   caption starts with it (`photo of fr3dd!e, …`), and later you put it in a prompt to call the concept up.
#   (The demo uses it as a word inside a sentence, `a red blicket on a blue background`; that works too.)
# - **Repeats**: how many times each image is shown per epoch. The folder name carries it:
#   `dataset/15_fr3dd!e/` means 15 repeats of token `fr3dd!e` (the kohya layout, which other trainers read
#   too). Steps = images × repeats × epochs ÷ batch size; for a character, aim for 1500–2000 steps
#   (25 images × 15 repeats × 5 epochs at batch 1 = 1875). Fewer images → more repeats.
# - **Regularization images** (optional): ordinary pictures of the class (`woman`, `dog`) so the LoRA does not
#   turn every woman into yours. They go in `dataset/reg/<repeats>_<class>/`.
#
# With no settings the notebook uses the **demo**: 16 pictures of a made-up shape, the *blicket*, plus 48
# ordinary shapes as regularization images; Run All gives a checked, captioned dataset in `../demo-project`.

# %% tags=["parameters"]
PROJECT = "../demo-project"  # the folder all five notebooks share ($LORAKIT_PROJECT overrides it)
SOURCE_IMAGES = ""  # your images: a plain folder or a kohya layout; empty = the demo (if the project has none)
TOKEN = "blicket"  # the trigger token; a plain folder's images go to dataset/<REPEATS>_<TOKEN>/
REPEATS = 10
REG_IMAGES = ""  # optional class images; empty = none (the demo brings its own)
CLASS_PROMPT = "shape"  # what the regularization images show
RESOLUTION = 0  # training side in px (512 SD 1.5, 768 SD 2, 1024 SDXL); 0 = lorakit.toml's, else demo's / 512
CAPTION_MODEL = ""  # a captioning model folder (see docs/captioning.md); empty = the demo's random toy model

# %%
from lorakit.dataset.captioners import caption_folder, load_captioner
from lorakit.dataset.captions import image_files, keep_tokens_for, plan_edit, read_captions, tag_frequency
from lorakit.dataset.checks import CheckSettings, check_folder, verify_dataset
from lorakit.dataset.crop import BucketSettings, bucket_preview
from lorakit.project import Project
from lorakit.ui import dataset as ui

# %%
project = Project.from_env(PROJECT)
source, reg_source = ui.choose_sources(project, SOURCE_IMAGES, REG_IMAGES)
cfg = ui.project_config(project, using_demo=ui.uses_demo(project, source))
RESOLUTION = RESOLUTION or cfg.data.resolution
print(f"project: {project.root}\nimages from: {source or '(the project already has images)'}; {RESOLUTION} px")

# %% [markdown]
# ## Import
#
# Supported: png, jpg/jpeg, webp, bmp (gif and tiff are converted to png). Photos are turned upright as their
# EXIF data says, and palette, greyscale, CMYK and 16-bit images become 8-bit RGB — each such file gets
# a note. Transparency is kept (an RGBA PNG): it can serve as the image's loss mask (below).
# Mask files (`<name>_mask.png`, or `masks/<name>.png`) come along with their images. Existing `.txt` captions come along. Two files with the same name (`a.png`, `a.jpg`) stop the import:
# they would share one caption. Importing again keeps what is already in the project.

# %%
import_form = ui.ImportForm(source, TOKEN, REPEATS, reg_source, CLASS_PROMPT if reg_source else "")
import_form.widget

# %%
reports = ui.run_import(project, import_form.value())
ui.import_view(reports)

# %% [markdown]
# ## Check
#
# Each image is checked: can it be decoded (empty, truncated, not an image, a decompression bomb), is it
# animated, is it smaller than the training resolution (it would be upscaled and look soft), is it blurry
# (*sharpness* 0–100: how crisp the strongest edges are; a clean edge ≈ 100), and is it a near-duplicate of
# another (same perceptual hash and colours). Captions are checked too. Nothing is deleted: look at what is
# flagged and decide. Green frame = fine, amber = have a look, red = unusable.

# %%
check_form = ui.CheckForm(CheckSettings(resolution=RESOLUTION))
check_form.widget

# %%
report = check_folder(project.dataset_dir, check_form.value())
ui.check_view(report)

# %% [markdown]
# ## Buckets and crops
#
# The trainer groups images by aspect ratio into **buckets** (sizes whose area is about resolution², sides a
# multiple of `bucket_reso_steps`), resizes each image to cover its bucket and crops the rest from the centre.
# Below: the bucket of each image and what the trainer will actually see (the exact code the trainer runs).
# *kept* is how much of the picture survives; if a face is cut off, crop the image yourself.

# %%
bucket_form = ui.BucketForm(BucketSettings.from_config(cfg.data, RESOLUTION))
bucket_form.widget

# %%
rows, counts = bucket_preview(project.dataset_dir, bucket_form.value())
ui.bucket_view(rows, counts)

# %% [markdown]
# The crop helper: choose an image, *center* (a box of the aspect you give) or *manual* (sliders), and press
# **crop**. The project's copy is cropped; its uncropped version is kept in `uncropped/`. Your originals are
# never touched. The cell after it does the same as the button (with the default *none* it does nothing).

# %%
crop = ui.CropHelper(project, image_files(project.dataset_dir))
crop.widget

# %%
crop.apply()

# %% [markdown]
# ## Masks (optional): learn only the subject
#
# A **mask** says which pixels the LoRA learns: white = learn, black = ignore (a stray second person, a busy
# background). It is the image's transparency, or a greyscale `<name>_mask.png` beside it (or `masks/<name>.png`).
# With *learn only the subject* ticked (`data.masked_loss`), the training loss counts only the white part;
# images without a mask are learnt whole. The helper shows image | mask | what is learnt, and makes a mask from a
# **rectangle** or from **everything but the background colour** (the colour of the image's border, within the
# tolerance); **save mask** writes `<name>_mask.png` (an existing mask only with *overwrite*). The check above
# lists which images have a mask. The cell after it does the same as the button (with *show* it writes nothing).

# %%
masks = ui.MaskHelper(project, image_files(project.dataset_dir), masked_loss=cfg.data.masked_loss)
masks.widget

# %%
print(masks.apply())

# %% [markdown]
# ## Captions
#
# A caption tells the model what is in the picture **besides** your concept. Whatever you describe is
# attributed to those words; whatever you leave out is absorbed by the trigger token. So for a person: write
# the clothes, the background, the pose, the light — not the face, which the token should learn. Keep the
# trigger first; with `shuffle_caption`, `keep_tokens` says how many leading tags stay in place.
#
# The editor: the image beside its caption; edit, **save** (the previous caption is kept in
# `captions-backup/`), then **next**.

# %%
editor = ui.CaptionEditor(project.dataset_dir)
editor.widget

# %% [markdown]
# **Tag operations** on every caption at once: a trigger prefix, tags to add, remove, replace (`old=new`),
# duplicates removed, tags moved to the front; *keep_tokens* here protects the first N existing tags from
# these edits. The table shows before → after; nothing is written unless you
# tick *write* (and then the old captions are backed up). The demo's captions are already good, so the
# defaults only preview.

# %%
tag_form = ui.TagForm(prefix=f"photo of {TOKEN}")
print(f"for shuffle_caption, set keep_tokens = {keep_tokens_for(tag_form.prefix.value)} in notebook 02")
tag_form.widget

# %%
changes = plan_edit(project.dataset_dir, tag_form.value())
print(ui.write_if_asked(changes, tag_form.write.value))
ui.changes_view(changes)

# %% [markdown]
# **Tag frequency**: tags that appear in almost every caption are learned as part of the concept (or are
# noise); a tag on one image only is rarely learned. For sentence captions the count is per word.

# %%
captions = [c.text for c in read_captions(project.dataset_dir, reg=False)]
ui.frequency_chart(tag_frequency(captions))

# %% [markdown]
# ## Automatic captions
#
# A captioning model drafts captions for you to review: **BLIP** writes a sentence ("a man in a red jacket
# standing on a beach"), a **tagger** lists booru-style tags above a probability threshold ("1boy, red jacket,
# beach, outdoors"). Use BLIP for photos and taggers for anime-style art. **wd14** runs kohya's WD14 taggers
# (a folder with `model.onnx` and `selected_tags.csv`, through onnxruntime: `pip install "lorakit[wd14]"`),
# with separate thresholds for general and character tags. Give a local model folder, or a hub id with *allow
# download* ticked (docs/captioning.md names good ones). A model that ships its own code needs *trust remote
# code*: tick it only for a repository you trust, as it runs that code on this machine. By default only images
# **without** a caption are captioned; *all images* replaces existing captions after backing them up. Captions
# over 75 CLIP tokens are flagged by the check above: the text encoder never reads the rest, unless notebook 02
# sets `data.max_token_length` to 150 or 225 (kohya's windows of 75).
#
# With no model the demo uses a tiny **random** model, made here offline: it shows the mechanics, and its
# captions are gibberish, so they are only previewed, never written.

# %%
cap_form = ui.CaptionerForm(CAPTION_MODEL, prefix=f"photo of {TOKEN}" if CAPTION_MODEL else "")
cap_form.widget

# %%
captioner = load_captioner(cap_form.value(project))
preview = caption_folder(captioner, project.dataset_dir, only_missing=False, limit=6)
ui.changes_view(preview)

# %%
proposals = caption_folder(captioner, project.dataset_dir, only_missing=cap_form.mode.value != "all")
print(ui.caption_write(cap_form, proposals))

# %% [markdown]
# ## Is the dataset ready?
#
# Every training image needs a readable, non-empty caption, and no file may be unusable. If this cell fails,
# it says what to fix. Next: **02 · hyperparameters**.

# %%
status = verify_dataset(project.dataset_dir)
assert status.ok, status.message
print(status.message)
print("most frequent:", tag_frequency(captions).most_common(3))
