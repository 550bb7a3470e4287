"""Re-writes a GGUF file as gguf-split shards with the `gguf` package's own GGUFWriter.

    .cache/venv/bin/python scripts/gguf-py-split.py IN.gguf OUT_PREFIX
        [--split-max-size BYTES] [--split-max-tensors N] [--small-first-shard] [--retype NAME=TYPE ...]

writes OUT_PREFIX-00001-of-0000N.gguf ... the way llama.cpp's `convert_hf_to_gguf.py --split-max-size`
does: one GGUFWriter in split mode (`split_max_size` / `split_max_tensors` / `small_first_shard`, the
converter's `--no-tensor-first-split`), every metadata key copied with its value type (as the package's
gguf_new_metadata.py copies them), and every tensor's raw bytes added with its ggml type, in file order;
then `write_header_to_file`, `write_kv_data_to_file`, `write_tensors_to_file`, `close`, as the converter
calls them. The shard names, the `split.*` keys and the layout are the writer's, not ours: this is the
independent producer that tests/foreign_shards.rs and tests/web/foreign-shards.test.mjs load.

Prints one JSON line: the writer's plan (each shard's path, size and tensor names, in order), the number
of tensors, and the value types the writer gave the split keys. Deterministic: the same input gives the
same bytes.

`--retype NAME=TYPE` re-encodes tensor NAME as ggml type TYPE with the package's own quantizer
(`gguf.quants.quantize` of its dequantized values): a file with a type the package writes and our
kernels may not run (the ternary TQ2_0, say), for the typed-error tests.
"""

import argparse
import json
import os
import sys
from pathlib import Path

import gguf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("input")
    ap.add_argument("out_prefix", help="shards are OUT_PREFIX-0000k-of-0000N.gguf")
    ap.add_argument("--split-max-size", type=int, default=0, help="bytes of tensor data per shard")
    ap.add_argument("--split-max-tensors", type=int, default=0)
    ap.add_argument("--small-first-shard", action="store_true", help="metadata only in the first shard")
    ap.add_argument("--retype", action="append", default=[], metavar="NAME=TYPE", help="re-encode a tensor as another type")
    a = ap.parse_args()
    if a.split_max_size == 0 and a.split_max_tensors == 0:
        sys.exit("give --split-max-size or --split-max-tensors")

    reader = gguf.GGUFReader(a.input)
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    out = Path(a.out_prefix + ".gguf")
    writer = gguf.GGUFWriter(
        out,
        arch=arch,
        endianess=reader.endianess,
        split_max_tensors=a.split_max_tensors,
        split_max_size=a.split_max_size,
        small_first_shard=a.small_first_shard,
    )
    alignment = reader.fields.get(gguf.Keys.General.ALIGNMENT)
    if alignment is not None:
        writer.data_alignment = alignment.contents()

    for field in reader.fields.values():
        # The reader's virtual GGUF.* fields, and what the writer adds itself.
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        if field.name.startswith("split."):
            continue
        vtype = field.types[0]
        sub_type = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), vtype, sub_type=sub_type)

    retype = dict(r.split("=", 1) for r in a.retype)
    for t in reader.tensors:
        # Raw bytes (uint8 rows for quantized types, float32 for F32) with the file's ggml type:
        # GGUFWriter derives the element shape from the byte shape, as for the converter's output.
        data, ty = t.data, t.tensor_type
        if t.name in retype:
            from gguf.quants import dequantize, quantize
            ty = gguf.GGMLQuantizationType[retype.pop(t.name)]
            data = quantize(dequantize(t.data, t.tensor_type), ty)
        writer.add_tensor(t.name, data, raw_shape=data.shape, raw_dtype=ty)
    if retype:
        sys.exit(f"no tensors {sorted(retype)} to retype")

    plan = [list(tensors.keys()) for tensors in writer.tensors]
    names = writer.format_shard_names(out)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    # The split keys as the writer typed them (it adds them while writing the header).
    split_types = {k: v.type.name for k, v in writer.kv_data[0].items() if k.startswith("split.")}
    writer.write_tensors_to_file()
    writer.close()

    print(json.dumps({
        "writer": f"gguf {getattr(gguf, '__version__', None) or _version()} GGUFWriter",
        "tensors": len(reader.tensors),
        "split_kv_types": split_types,
        "shards": [
            {"path": str(p), "size": os.path.getsize(p), "tensors": ts}
            for p, ts in zip(names, plan)
        ],
    }))


def _version() -> str:
    from importlib.metadata import version
    return version("gguf")


if __name__ == "__main__":
    main()
