"""Copy a Hugging Face model folder with its floating-point weights stored in fp16: half the bytes.

For a GPU machine that receives only a limited upload and cannot download (the GPU check's
``--model``): the pipeline loads every checkpoint with fp32 parameters
(:func:`pipeline.modeling.load_encoder`), so the copy is the same encoder with each weight
rounded to fp16 once, and fp32, bf16 and fp16 evaluation compare on equal terms.

    python bench/half_copy.py <model folder> <new folder>
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path


def half_copy(source: Path, target: Path) -> list[Path]:
    """Copy ``source`` to ``target`` (a new folder), writing each ``*.safetensors`` file's float tensors as fp16.

    Returns:
        the weight files written.
    """
    import torch
    from safetensors.torch import load_file, save_file

    weights = sorted(source.glob("*.safetensors"))
    if not weights:
        raise SystemExit(f"error: {source}: no *.safetensors weights; expected a Hugging Face model folder")
    if target.exists():
        raise SystemExit(f"error: {target}: exists; expected a new folder")
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "*.h5", "*.msgpack",
                                                                  "onnx", "openvino"))
    for path in weights:
        tensors = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in load_file(path).items()}
        save_file(tensors, target / path.name, metadata={"format": "pt"})
    return [target / path.name for path in weights]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    args = parser.parse_args(argv)
    written = half_copy(args.source, args.target)
    before = sum(p.stat().st_size for p in args.source.glob("*.safetensors"))
    after = sum(p.stat().st_size for p in written)
    print(f"wrote {args.target}: weights {before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
