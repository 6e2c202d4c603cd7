"""lorakit: train a LoRA for Stable Diffusion on your own images, offline; the package's folders import only downward."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("lorakit")
except _metadata.PackageNotFoundError:  # a checkout on sys.path that was never installed
    __version__ = "0+unknown"
