"""Repository-level pytest setup: one torch thread, no network, and a fresh project for the notebooks.

The five notebooks share one project folder and run in order (00 -> 04); LORAKIT_PROJECT points them at a
new temporary folder so a test run never reads or changes anything of yours.
"""

import os
import tempfile

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("LORAKIT_PROJECT", tempfile.mkdtemp(prefix="lorakit-notebooks-"))
_scratch = tempfile.mkdtemp(prefix="lorakit-test-cache-")
os.environ.setdefault("LORAKIT_SPEED_FILE", os.path.join(_scratch, "speed.json"))  # never the user's own file
os.environ.setdefault("LORAKIT_CACHE", _scratch)
