#!/usr/bin/env python3
"""Writes src/quant/iq_grids.rs: the lattice tables of the i-quants, from the pinned gguf-py.

Usage: .cache/venv/bin/python scripts/iq-grids.py > src/quant/iq_grids.rs

An i-quant stores, for each group of 4 or 8 weights, an index into a fixed table of points
(ggml's `iq3s_grid` and its kin); gguf-py carries the same tables, hex-encoded, as each type's
`grid`. This script decodes them and prints each entry as the bytes of its points, element 0 in
the lowest byte, the layout the Rust and WGSL decoders read. IQ1_S's points (shared by IQ1_M) are
-1, 0 and 1, stored plus one. It also prints the IQ2/IQ3 sign table (`ksigns`): seven sign bits
and an eighth that makes their count even. tests/quant.rs checks the result
against gguf-py's tables again (scripts/quant_ref.py --grids), so a regenerated file that differs
fails there.
"""

import sys

import numpy as np
from gguf import quants

TYPES = ["IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ1_S"]
# Added to every value before it is stored as a byte.
OFFSET = {"IQ1_S": 1}


def rows(name: str):
    cls = getattr(quants, name)
    cls.init_grid()
    grid = np.asarray(cls.grid, dtype=np.float32).reshape(cls.grid_shape)
    for entry in grid:
        packed = 0
        for i, v in enumerate(entry):
            v = v + OFFSET.get(name, 0)
            b = int(v)
            assert b == v and 0 <= b < 256, (name, v)
            packed |= b << (8 * i)
        yield packed


def main() -> None:
    out = sys.stdout
    out.write("//! The i-quants' lattice tables, written by scripts/iq-grids.py from gguf-py (do not edit):\n")
    out.write("//! entry `i` holds its points' values as bytes, element 0 in the lowest byte.\n\n")
    for name in TYPES:
        cls = getattr(quants, name)
        n, per = cls.grid_shape
        ty = "u32" if per == 4 else "u64"
        width = 8 if per == 4 else 16
        shift = f", each plus {OFFSET[name]}" if name in OFFSET else ""
        out.write(f"/// {name}: {n} points of {per} values{shift}.\n")
        out.write(f"pub const {name}_GRID: [{ty}; {n}] = [\n")
        vals = list(rows(name))
        for i in range(0, n, 8):
            out.write("    " + ", ".join(f"0x{v:0{width}x}" for v in vals[i:i + 8]) + ",\n")
        out.write("];\n")
    signs = list(quants.IQ2_XXS.ksigns)
    out.write("/// IQ2_XXS, IQ2_XS and IQ3_XXS: sign byte of each 7-bit sign index (bit k set: element k negative).\n")
    out.write(f"pub const KSIGNS: [u8; {len(signs)}] = [\n")
    for i in range(0, len(signs), 16):
        out.write("    " + ", ".join(f"0x{v:02x}" for v in signs[i:i + 16]) + ",\n")
    out.write("];\n")


if __name__ == "__main__":
    main()
