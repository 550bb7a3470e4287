#!/usr/bin/env python3
"""Requantize a GGUF model into several formats with llama.cpp's own quantizer.

Usage: .cache/venv/bin/python scripts/requant.py SRC.gguf OUTDIR

The outputs (``<stem>.<FORMAT>.gguf``, where ``<stem>`` is SRC's name without its format suffix)
are the test material for the CPU dequantization: together they must hold tensors of every type
``llama_webgpu::quant`` supports. llama.cpp comes from the prebuilt libraries that node-llama-cpp
ships (scripts/node_modules), loaded through ctypes; nothing is built or downloaded.

Idempotent: an output that exists and whose header says all its tensors lie inside the file is
skipped; new outputs are written under a temporary name and renamed when done. Set
REQUANT_VERBOSE=1 to see llama.cpp's per-tensor log.
"""

from __future__ import annotations

import ctypes
import glob
import math
import os
import struct
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BINS = ROOT / "scripts/node_modules/@node-llama-cpp/linux-x64/bins"

# Output name → llama_ftype (include/llama.h); a "_pure" name also sets `pure`.
FORMATS = {
    "F16": 1,
    "BF16": 32,
    "Q4_0": 2,
    "Q5_0": 8,
    "Q5_1": 9,
    "Q8_0": 7,
    "Q2_K": 10,
    # SmolLM2's width (576) is not a multiple of 256, so k-quant files fall back to legacy types for
    # most tensors, and the Q2_K mix puts the rest (ffn_down) in Q3_K. "Pure" Q2_K (no per-tensor
    # mix) is the only way to get Q2_K tensors: Q2_K_S would, but it demands an importance matrix.
    "Q2_K_pure": 10,
    "Q3_K_M": 12,
    "Q4_K_M": 15,
    "Q5_K_M": 17,
    "Q6_K": 18,
    # Neither needs an importance matrix. IQ4_XS's 256-element super-blocks fit only ffn_down
    # (1536 wide); llama.cpp gives the other tensors IQ4_NL.
    "IQ4_NL": 25,
    "IQ4_XS": 30,
    # IQ3_S's 256-element blocks fit ffn_down only (IQ4_NL elsewhere). The IQ3_XXS mix, without
    # an importance matrix, gives SmolLM2 no IQ3_XXS tensor at all.
    "IQ3_S": 26,
}

GGML_TYPE_COUNT = 43  # ggml.h of the bundled llama.cpp; "no override" for the type fields
GGML_LOG_LEVEL_WARN, GGML_LOG_LEVEL_CONT = 3, 5

LOG_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
_log_state = {"shown": False}


@LOG_CALLBACK
def _quiet_log(level: int, text: bytes, _user: int) -> None:
    # llama.cpp reports every tensor at INFO level; only warnings and errors (and their
    # continuation lines) are worth showing from a setup script. The per-tensor "ncols not
    # divisible ... falling back" warnings are expected for this model (width 576) and summed up
    # in one line afterwards.
    if level != GGML_LOG_LEVEL_CONT:
        expected = b"falling back to" in text or b"not divisible by" in text
        _log_state["shown"] = level >= GGML_LOG_LEVEL_WARN and not expected
    if _log_state["shown"]:
        sys.stderr.write(text.decode(errors="replace"))


class QuantizeParams(ctypes.Structure):
    """`llama_model_quantize_params` exactly as in the include/llama.h that node-llama-cpp 3.21.1
    bundles (node_modules/node-llama-cpp/llama/gitRelease.bundle, release v0.4.0). The struct is
    returned by value, so its size must be right; `check_defaults` verifies it against the values
    `llama_model_quantize_default_params` is known to return."""

    _fields_ = [
        ("nthread", ctypes.c_int32),
        ("ftype", ctypes.c_int32),  # enum llama_ftype
        ("output_tensor_type", ctypes.c_int32),  # enum ggml_type
        ("token_embedding_type", ctypes.c_int32),  # enum ggml_type
        ("allow_requantize", ctypes.c_bool),
        ("quantize_output_tensor", ctypes.c_bool),
        ("only_copy", ctypes.c_bool),
        ("pure", ctypes.c_bool),
        ("keep_split", ctypes.c_bool),
        ("dry_run", ctypes.c_bool),
        ("imatrix", ctypes.c_void_p),
        ("kv_overrides", ctypes.c_void_p),
        ("tt_overrides", ctypes.c_void_p),
        ("prune_layers", ctypes.c_void_p),
        ("max_buf_size", ctypes.c_size_t),
    ]


def check_defaults(p: QuantizeParams) -> None:
    expected = {
        "nthread": 0,
        "ftype": 7,
        "output_tensor_type": GGML_TYPE_COUNT,
        "token_embedding_type": GGML_TYPE_COUNT,
        "allow_requantize": False,
        "quantize_output_tensor": True,
        "only_copy": False,
        "pure": False,
        "keep_split": False,
        "dry_run": False,
        "imatrix": None,
        "kv_overrides": None,
        "tt_overrides": None,
        "prune_layers": None,
        "max_buf_size": 8 << 30,
    }
    got = {name: getattr(p, name) for name, _ in QuantizeParams._fields_}
    if got != expected or ctypes.sizeof(QuantizeParams) != 64:
        sys.exit(f"llama_model_quantize_params layout does not match this llama.cpp build: {got}")


def load_llama() -> ctypes.CDLL:
    libs = sorted(glob.glob(str(BINS / "*" / "libllama*.so")))
    if not libs:
        sys.exit(f"no libllama*.so under {BINS}; run scripts/setup")
    bindir = Path(libs[0]).parent
    # libllama needs these by soname; load them globally first so the dynamic linker finds them.
    for pattern in ("libggml-base.so", "libggml.so", "libggml.v*.so"):
        for lib in sorted(bindir.glob(pattern)):
            ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
    llama = ctypes.CDLL(libs[0], mode=ctypes.RTLD_GLOBAL)
    llama.llama_backend_init.argtypes = []
    llama.llama_backend_init.restype = None
    llama.llama_model_quantize_default_params.argtypes = []
    llama.llama_model_quantize_default_params.restype = QuantizeParams
    llama.llama_model_quantize.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(QuantizeParams)]
    llama.llama_model_quantize.restype = ctypes.c_uint32
    llama.llama_log_set.argtypes = [LOG_CALLBACK, ctypes.c_void_p]
    llama.llama_log_set.restype = None
    if not os.environ.get("REQUANT_VERBOSE"):
        llama.llama_log_set(_quiet_log, None)
    llama.llama_backend_init()
    return llama


def gguf_data_end(path: Path) -> int:
    """The byte offset where the last tensor of a GGUF file ends, from its header alone.

    gguf.GGUFReader would do, but it takes seconds per file (it builds an array per vocab string);
    this walk over the header takes milliseconds, which keeps a no-op run of setup fast."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
    with open(path, "rb") as f:
        def read(fmt: str):
            fmt = "<" + fmt
            return struct.unpack(fmt, f.read(struct.calcsize(fmt)))

        def string() -> bytes:
            (n,) = read("Q")
            return f.read(n)

        def value(vtype: int):
            if vtype in scalar:
                return read(scalar[vtype])[0]
            if vtype == 8:
                return string()
            if vtype == 9:
                etype, n = read("IQ")
                if etype in scalar:  # skip numeric arrays wholesale
                    f.seek(n * struct.calcsize(scalar[etype]), os.SEEK_CUR)
                else:
                    for _ in range(n):
                        value(etype)
                return None
            raise ValueError(f"unknown GGUF value type {vtype}")

        magic, _version, n_tensors, n_kv = read("4sIQQ")
        if magic != b"GGUF":
            raise ValueError("not a GGUF file")
        alignment = 32
        for _ in range(n_kv):
            key = string()
            (vtype,) = read("I")
            v = value(vtype)
            if key == b"general.alignment":
                alignment = v
        end = 0
        for _ in range(n_tensors):
            string()
            (n_dims,) = read("I")
            dims = read("Q" * n_dims)
            ttype, offset = read("IQ")
            block_size, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ttype)]
            end = max(end, offset + math.prod(dims) // block_size * type_size)
        data_start = -(-f.tell() // alignment) * alignment
        return data_start + end


def is_complete(path: Path) -> bool:
    """Whether `path` is a GGUF file whose tensors all lie inside it."""
    try:
        return path.is_file() and gguf_data_end(path) <= path.stat().st_size
    except Exception:
        return False


def output_stem(src: Path) -> str:
    # "SmolLM2-135M-Instruct.Q4_1.gguf" → "SmolLM2-135M-Instruct"
    stem = src.name.removesuffix(".gguf")
    head, _, _ = stem.rpartition(".")
    return head or stem


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, outdir = Path(sys.argv[1]), Path(sys.argv[2])
    if not src.is_file():
        sys.exit(f"{src}: not found")
    outdir.mkdir(parents=True, exist_ok=True)
    stem = output_stem(src)

    todo = [(name, ftype) for name, ftype in FORMATS.items() if not is_complete(outdir / f"{stem}.{name}.gguf")]
    if not todo:
        print(f"requant: all {len(FORMATS)} requantizations of {stem} are present", file=sys.stderr)
        return

    llama = load_llama()
    for name, ftype in todo:
        dst = outdir / f"{stem}.{name}.gguf"
        tmp = dst.with_name(dst.name + ".tmp")
        params = llama.llama_model_quantize_default_params()
        check_defaults(params)
        params.nthread = os.cpu_count() or 1
        params.ftype = ftype
        # The source is already quantized (Q4_1); llama.cpp refuses to requantize without this.
        params.allow_requantize = True
        params.pure = name.endswith("_pure")
        t0 = time.monotonic()
        rc = llama.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
        if rc != 0 or not is_complete(tmp):
            tmp.unlink(missing_ok=True)
            sys.exit(f"llama_model_quantize to {name} failed (rc={rc})")
        os.replace(tmp, dst)
        print(f"requant: {dst.name} in {time.monotonic() - t0:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
