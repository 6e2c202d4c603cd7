"""Every error lorakit raises on purpose: one base class, so the CLI and notebooks can show it as one sentence.

    try:
        train(project, cfg)
    except LorakitError as e:      # a bad setting, file or model: the message says what to do
        print(e)

Each class also derives from the built-in error it used to be (ValueError, FileNotFoundError, ...), so code
that catches those keeps working.
"""

from __future__ import annotations


class LorakitError(Exception):
    """Something the user can fix; the message names the file or setting and what to do."""


class ConfigError(LorakitError, ValueError):
    """A setting that cannot work, with what to do instead."""


class ProjectError(LorakitError, FileNotFoundError):
    """A project folder, or something a step needs in it, is missing."""


class ModelError(LorakitError, RuntimeError):
    """A base model that cannot be found or loaded, with what to do."""


class DatasetError(LorakitError, ValueError):
    """A dataset that cannot be trained on, with the file and the reason."""


class PatchError(LorakitError, ValueError):
    """A LoRA file whose tensors cannot be applied to this base model, with the reason."""


class GenerateError(LorakitError, ValueError):
    """A prompt, sampler or LoRA that cannot be used, with the fix."""


class GridError(LorakitError, ValueError):
    """An axis or grid setting that cannot work, with the fix."""


class OptimizerUnavailable(LorakitError, ImportError):
    """An optimizer whose package is not installed, with the install command."""


class ResumeError(LorakitError, ValueError):
    """A saved training state that cannot be resumed from (missing, half-written, or a pickle), with what to do."""


class TrainingError(LorakitError, RuntimeError):
    """A run that cannot go on (the loss diverged, another run holds the project), with what to change."""


class ExportError(LorakitError, ValueError):
    """A LoRA that cannot be copied into the user's AUTOMATIC1111 / Forge / ComfyUI folder, with what to give."""


class LoraToolError(LorakitError, ValueError):
    """A LoRA inspect / resize / merge / extract request that cannot work (wrong file, rank, family), with the fix."""
