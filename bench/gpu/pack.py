"""Cut the payload folder into chunk folders that each fit one device call.

    python3 bench/gpu/pack.py PAYLOAD_DIR CARRY_DIR [--chunk-mib 58] [--piece-mib 8]

Every file of PAYLOAD_DIR larger than --piece-mib is cut with `split -b` into pieces
`<file>.part.000`, `.part.001`, ... (in CARRY_DIR/pieces/); files and pieces are then
packed, largest first, into CARRY_DIR/gpu1, gpu2, ... of at most --chunk-mib each
(hard links, same relative paths). Writes, beside this script:

  payload.sha256  sha256 of every whole file (`sha256sum -c` format, paths relative
                  to the payload root): setup.sh checks it after reassembly.
  payload.chunks  one line per item carried: chunk number, sha256, bytes, path;
                  stage.sh checks its chunk against it, setup.sh names missing chunks.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
MIB = 1 << 20


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("payload", type=Path)
    ap.add_argument("carry", type=Path)
    ap.add_argument("--chunk-mib", type=int, default=58)
    ap.add_argument("--piece-mib", type=int, default=8)
    args = ap.parse_args()
    cap, piece = args.chunk_mib * MIB, args.piece_mib * MIB
    payload, carry = args.payload.resolve(), args.carry.resolve()

    files = sorted(p for p in payload.rglob("*") if p.is_file())
    whole = [(str(p.relative_to(payload)), sha256(p)) for p in files]
    (HERE / "payload.sha256").write_text("".join(f"{h}  {rel}\n" for rel, h in whole))

    pieces_root = carry / "pieces"
    shutil.rmtree(pieces_root, ignore_errors=True)
    items = []  # (relative path, absolute source)
    for p in files:
        rel = p.relative_to(payload)
        if p.stat().st_size > piece:
            out = pieces_root / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["split", "-b", str(piece), "-d", "-a", "3", str(p), f"{out}.part."], check=True)
            items += [(str(q.relative_to(pieces_root)), q) for q in sorted(out.parent.glob(out.name + ".part.*"))]
        else:
            items.append((str(rel), p))

    # First fit, largest first.
    items.sort(key=lambda it: (-it[1].stat().st_size, it[0]))
    chunks: list[list[tuple[str, Path]]] = []
    used: list[int] = []
    for rel, src in items:
        size = src.stat().st_size
        for i, u in enumerate(used):
            if u + size <= cap:
                chunks[i].append((rel, src))
                used[i] += size
                break
        else:
            chunks.append([(rel, src)])
            used.append(size)

    for old in carry.glob("gpu[0-9]*"):
        shutil.rmtree(old)
    lines = []
    for k, chunk in enumerate(chunks, start=1):
        for rel, src in sorted(chunk):
            dst = carry / f"gpu{k}" / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.link(src, dst)
            lines.append(f"{k} {sha256(src)} {src.stat().st_size} {rel}\n")
    (HERE / "payload.chunks").write_text("".join(lines))
    total = sum(p.stat().st_size for p in files)
    print(f"pack: {len(files)} files, {total / MIB:.1f} MiB -> {len(chunks)} chunks "
          f"(cap {args.chunk_mib} MiB, pieces of {args.piece_mib} MiB)")
    for k, u in enumerate(used, start=1):
        print(f"  .carry/gpu{k}: {u / MIB:.1f} MiB, {len(chunks[k - 1])} items")


if __name__ == "__main__":
    main()
