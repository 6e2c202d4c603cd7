"""Build lorakit/models/data/clip_bpe_merges.txt.gz, the CLIP BPE merges that lorakit's tokenizers are made from.

    pip download --no-deps open-clip-torch -d /tmp/oc
    python scripts/build_clip_vocab.py /tmp/oc/open_clip_torch-*.whl

The source is open_clip's ``bpe_simple_vocab_16e6.txt.gz`` (MIT; the file OpenAI's CLIP ships too). CLIP uses
only its first 48,894 merges: vocabulary = 256 byte symbols + the same with ``</w>`` + one token per merge +
``<|startoftext|>`` and ``<|endoftext|>`` = 49,408 tokens. Only those merges are kept (about a quarter of the
file), gzipped without a timestamp so the same wheel always gives the same bytes.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import zipfile
from pathlib import Path

SOURCE = "open_clip/bpe_simple_vocab_16e6.txt.gz"
N_MERGES = 49408 - 2 * 256 - 2  # vocabulary size minus the byte symbols and the two special tokens
DEST = Path(__file__).resolve().parents[1] / "lorakit" / "models" / "data" / "clip_bpe_merges.txt.gz"


def read_source(wheel: Path) -> bytes:
    """The gzipped BPE file from an open-clip-torch wheel (or the .txt.gz itself)."""
    if wheel.suffix == ".whl":
        with zipfile.ZipFile(wheel) as z:
            return z.read(SOURCE)
    return wheel.read_bytes()


def build(wheel: Path, dest: Path = DEST) -> Path:
    raw = read_source(wheel)
    lines = gzip.decompress(raw).decode("utf-8").split("\n")
    merges = lines[1:N_MERGES + 1]  # line 0 is a '#version' header
    if len(merges) != N_MERGES or any(len(m.split()) != 2 for m in merges):
        raise SystemExit(f"{wheel}: expected {N_MERGES} merges of two symbols after the header")
    header = f"#clip bpe merges: first {N_MERGES} of {SOURCE} (sha256 {hashlib.sha256(raw).hexdigest()[:16]})"
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as gz:
        gz.write(("\n".join([header, *merges]) + "\n").encode("utf-8"))
    return dest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="open_clip_torch-*.whl, or bpe_simple_vocab_16e6.txt.gz")
    parser.add_argument("--dest", type=Path, default=DEST)
    args = parser.parse_args(argv)
    out = build(args.wheel, args.dest)
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
