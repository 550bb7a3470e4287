#!/usr/bin/env python3
"""Reference dequantizations for tests/quant.rs, made with gguf-py's `gguf.quants.dequantize`.

Usage: .cache/venv/bin/python scripts/quant_ref.py MODEL.gguf [MODEL.gguf ...] OUTDIR

For every tensor type in a model, up to 3 tensors of that type are picked (the smallest, the
median and the largest by element count) and dequantized; each result is written as raw
little-endian float32 to OUTDIR/<model-stem>/<tensor-name>.f32, next to a manifest.json:

    {"model": file name, "model_size": bytes, "model_mtime_ns": int, "gguf_version": str,
     "tensors": [{"name", "type", "n_elements", "file", "sha256", "source_sha256"}, ...]}

("sha256" is of the .f32 file, "source_sha256" of the tensor's quantized bytes.)

Cached: a model whose manifest matches its current size and mtime (and whose .f32 files all
exist with the right sizes) is skipped without importing gguf, so a no-op run is fast. Files are
written under temporary names and renamed; the manifest goes last.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

def model_stem(model: Path) -> str:
    return model.name.removesuffix(".gguf")


def is_cached(model: Path, outdir: Path) -> bool:
    manifest = outdir / "manifest.json"
    try:
        m = json.loads(manifest.read_text())
        st = model.stat()
        if m["model_size"] != st.st_size or m["model_mtime_ns"] != st.st_mtime_ns:
            return False
        return all((outdir / t["file"]).stat().st_size == 4 * t["n_elements"] for t in m["tensors"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def pick(tensors: list) -> list:
    """Smallest, median and largest by element count (fewer if there are fewer)."""
    by_size = sorted(tensors, key=lambda t: (int(t.n_elements), t.name))
    chosen = [by_size[0], by_size[len(by_size) // 2], by_size[-1]]
    return list({t.name: t for t in chosen}.values())


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def known_references(out: Path) -> dict[str, Path]:
    """sha256 of quantized tensor bytes → an existing reference made from exactly those bytes.

    Many models share tensors (llama.cpp copies a tensor whose type does not change), and
    token_embd alone is 113 MB of float32: identical references are hard-linked, not redone."""
    known = {}
    for manifest in out.glob("*/manifest.json"):
        try:
            for t in json.loads(manifest.read_text())["tensors"]:
                path = manifest.parent / t["file"]
                if path.is_file():
                    known[t["source_sha256"]] = path
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return known


def generate(model: Path, outdir: Path, known: dict[str, Path]) -> None:
    import numpy as np
    import gguf
    from gguf import GGUFReader
    from gguf.quants import dequantize

    reader = GGUFReader(model)
    by_type: dict = {}
    for t in reader.tensors:
        by_type.setdefault(t.tensor_type, []).append(t)

    outdir.mkdir(parents=True, exist_ok=True)
    entries = []
    for ty in sorted(by_type, key=lambda ty: ty.name):
        for t in pick(by_type[ty]):
            file = outdir / f"{t.name}.f32"
            source_sha256 = hashlib.sha256(t.data.tobytes()).hexdigest()
            same = known.get(source_sha256)
            if same is not None and same.resolve() != file.resolve():
                tmp = file.with_name(file.name + ".tmp")
                tmp.unlink(missing_ok=True)
                os.link(same, tmp)
                os.replace(tmp, file)
                data = file.read_bytes()
            else:
                values = np.ascontiguousarray(dequantize(t.data, t.tensor_type), dtype="<f4")
                data = values.tobytes()
                write_atomic(file, data)
            if len(data) != 4 * int(t.n_elements):
                sys.exit(f"{model.name}: {t.name}: {len(data) // 4} values, expected {t.n_elements}")
            known[source_sha256] = file
            entries.append({
                "name": t.name,
                "type": ty.name,
                "n_elements": int(t.n_elements),
                "file": file.name,
                "sha256": hashlib.sha256(data).hexdigest(),
                "source_sha256": source_sha256,
            })

    st = model.stat()
    manifest = {
        "model": model.name,
        "model_size": st.st_size,
        "model_mtime_ns": st.st_mtime_ns,
        "gguf_version": getattr(gguf, "__version__", None) or _gguf_version(),
        "tensors": entries,
    }
    write_atomic(outdir / "manifest.json", json.dumps(manifest, indent=1).encode())
    # References of tensors an earlier version of the model had picked.
    keep = {e["file"] for e in entries}
    for stale in outdir.glob("*.f32"):
        if stale.name not in keep:
            stale.unlink()
    types = sorted({e["type"] for e in entries})
    print(f"quant_ref: {model.name}: {len(entries)} tensors of {', '.join(types)}", file=sys.stderr)


def _gguf_version() -> str | None:
    from importlib.metadata import version

    try:
        return version("gguf")
    except Exception:
        return None


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    *models, out = sys.argv[1:]
    known = None
    for model in map(Path, models):
        if not model.is_file():
            sys.exit(f"{model}: not found")
        outdir = Path(out) / model_stem(model)
        if not is_cached(model, outdir):
            known = known_references(Path(out)) if known is None else known
            generate(model, outdir, known)

if __name__ == "__main__":
    main()
