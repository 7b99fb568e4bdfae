"""Writes the crafted PyTorch checkpoints of tests/data/pth/ (regression inputs of the `.pth`
reader and seeds of tests/fuzz_pth.rs). Each is a few hundred bytes to a few KB.

    /work/venv/bin/python scripts/gen_crafted_pth.py [out_dir]

- stride0.pth      four stride-0 views of one float each, declaring 8 GiB apiece (refused by
                   the byte budget before anything is read)
- overlap.pth      three overlapping views of one 16-float storage (declare 32 floats, store 16)
- uint64.pth       a u64 tensor next to a float one (refused for its dtype)
- compressed.pth   a torch.save zip re-packed with deflate (not what torch.save writes)
- legacy.pth       the pre-1.6 container (`_use_new_zipfile_serialization=False`), mixed dtypes
- mixed.pth        the zip container with f16, bf16, f64, i64, i32, u8 and bool tensors
- memo_bomb.pth    a 4 kB pickle that refers 1,000 times to one memoized 1,000-element list
                   (a million nodes if each reference were copied)
"""

import io
import sys
import zipfile
from pathlib import Path

import torch

out = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/data/pth")
out.mkdir(parents=True, exist_ok=True)


def save(obj, name, **kw):
    torch.save(obj, out / name, **kw)


one = torch.zeros(1)
save({f"w{i}": one.expand(2**31) for i in range(4)}, "stride0.pth")

base = torch.arange(16, dtype=torch.float32)
save({"a": base[:8], "b": base[4:12], "c": base}, "overlap.pth")

save({"w": torch.ones(2), "ids": torch.tensor([1, 2, 3], dtype=torch.uint64)}, "uint64.pth")

buf = io.BytesIO()
torch.save({"w": torch.arange(64, dtype=torch.float32)}, buf)
with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as src, zipfile.ZipFile(
    out / "compressed.pth", "w", compression=zipfile.ZIP_DEFLATED
) as dst:
    for info in src.infolist():
        dst.writestr(info.filename, src.read(info.filename))

mixed = {
    "h": torch.tensor([1.5, -2.0], dtype=torch.float16),
    "b": torch.tensor([[0.25], [-8.0]], dtype=torch.bfloat16),
    "d": torch.tensor([0.5, 1e-3], dtype=torch.float64),
    "i": torch.tensor([-3, 2**40], dtype=torch.int64),
    "j": torch.tensor([-7, 7], dtype=torch.int32),
    "u": torch.tensor([0, 255], dtype=torch.uint8),
    "m": torch.tensor([True, False, True]),
}
save(mixed, "mixed.pth")
save({"nested": {"h": mixed["h"], "i": mixed["i"]}, "epoch": 3}, "legacy.pth",
     _use_new_zipfile_serialization=False)

# Hand-written pickle (protocol 2): {'x': [L] * 1000} with L = [0..999] memoized once.
pkl = bytearray(b"\x80\x02}q\x00(X\x01\x00\x00\x00x]q\x01(")
pkl += b"".join(b"K" + bytes([i % 256]) for i in range(1000))
pkl += b"e0]("  # APPENDS into L, POP it (it stays in memo 1), the outer list
pkl += b"h\x01" * 1000 + b"eu."  # BINGET L a thousand times, APPENDS, SETITEMS, STOP
with zipfile.ZipFile(out / "memo_bomb.pth", "w", compression=zipfile.ZIP_STORED) as z:
    z.writestr("memo_bomb/data.pkl", bytes(pkl))
    z.writestr("memo_bomb/byteorder", "little")
    z.writestr("memo_bomb/version", "3\n")

for p in sorted(out.glob("*.pth")):
    print(f"{p}: {p.stat().st_size} bytes")
