"""Structure-aware fuzzing of the Mach-O tables with hostile variants of real and synthetic files.

Seeds are the corpus files (up to --max-seed bytes) and fixtures from our Mach-O writer. Each
input is a seed with mutations aimed where parsers break: truncation, lying ncmds/sizeofcmds,
load commands whose sizes overrun or are zero, fat headers with thousands of slices or
overlapping offsets, bogus SuperBlob offsets and counts, huge symbol counts, and random bytes.
Every input is written to a file and read through both tables exactly as a query would. Each must
yield rows or an error row, within --limit seconds, and nothing may raise.

    python bench/fuzz_macho.py --inputs 100000 [--seed N] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import random
import struct
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from dyldwatch.formats.macho import MachOError, read_load_commands, read_slices  # noqa: E402
from dyldwatch.formats.source import BytesSource  # noqa: E402
from dyldwatch.tables.base import Op, QueryContext  # noqa: E402
from dyldwatch.tables.macho_info import MachoInfoTable  # noqa: E402
from dyldwatch.tables.macho_load_commands import MachoLoadCommandsTable  # noqa: E402

LC_SYMTAB, LC_CODE_SIGNATURE = 0x2, 0x1D


def writer_seeds() -> list[bytes]:
    from dyldwatch.formats.macho import writer as mw

    out = [mw.sample_executable().build(), mw.sample_executable(is64=False, cputype=mw.C.CPU_TYPE_X86).build(),
           mw.sample_executable(big_endian=True).build()]
    out.append(mw.fat(out[:2]))
    out.append(mw.fat(out[:2], magic64=True))
    try:
        from dyldwatch.formats.macho import sigwriter

        w = mw.sample_executable()
        w.set_code_signature(sigwriter.build_superblob("com.example.fuzz", team_id="TEAM123456", flags=0x10000,
                                                       entitlements={"com.apple.security.cs.allow-jit": True}))
        out.append(w.build())
    except (ImportError, TypeError, AttributeError):
        pass
    return out


def corpus_seeds(max_size: int) -> list[bytes]:
    base = Path(os.environ.get("DYLDWATCH_CORPUS") or Path.home() / ".cache" / "dyldwatch-corpus") / "files"
    seeds = []
    for p in sorted(base.glob("*")) if base.is_dir() else []:
        if p.stat().st_size <= max_size:
            seeds.append(p.read_bytes())
    return seeds


def landmarks(data: bytes) -> dict[str, list[int]]:
    """Offsets worth corrupting in a well-formed seed: headers, commands, symtab, signature."""
    marks: dict[str, list[int]] = {"header": [], "cmd": [], "symtab": [], "sig": [], "fat": []}
    src = BytesSource(data)
    try:
        refs = read_slices(src)
    except MachOError:
        return marks
    if data[:4] in (b"\xca\xfe\xba\xbe", b"\xca\xfe\xba\xbf"):
        marks["fat"].append(0)
    for ref in refs:
        marks["header"].append(ref.offset)
        try:
            sl = read_load_commands(src, ref)
        except MachOError:
            continue
        for c in sl.commands:
            marks["cmd"].append(c.offset)
            if c.cmd == LC_SYMTAB:
                marks["symtab"].append(c.offset)
            if c.cmd == LC_CODE_SIGNATURE and c.data:
                marks["sig"].append(ref.offset + int(c.data.get("dataoff", 0)))
    return marks


def _put(buf: bytearray, off: int, fmt: str, value: int) -> None:
    if off >= 0 and off + struct.calcsize(fmt) <= len(buf):
        struct.pack_into(fmt, buf, off, value & ((1 << (8 * struct.calcsize(fmt))) - 1))


def mutate(seed: bytes, marks: dict[str, list[int]], rng: random.Random) -> bytes:
    buf = bytearray(seed)
    little = "<" if seed[:4] in (b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe") else ">"
    nasty = [0, 1, 7, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 0x80000000, len(seed), len(seed) + 8, rng.getrandbits(32)]
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(10)
        if kind == 0:  # truncate
            return bytes(buf[: rng.randrange(len(buf) + 1)])
        if kind == 1 and marks["header"]:  # lying ncmds / sizeofcmds
            h = rng.choice(marks["header"])
            _put(buf, h + rng.choice((16, 20)), little + "I", rng.choice(nasty))
        elif kind == 2 and marks["cmd"]:  # cmdsize zero, overrunning, misaligned
            c = rng.choice(marks["cmd"])
            _put(buf, c + 4, little + "I", rng.choice([0, 4, 7, 0xFFFFFFF0, rng.getrandbits(16)]))
        elif kind == 3 and marks["cmd"]:  # lc_str offsets and command payload fields
            c = rng.choice(marks["cmd"])
            _put(buf, c + rng.choice((8, 12, 16, 20, 24)), little + "I", rng.choice(nasty))
        elif kind == 4:  # fat headers with thousands of slices or overlapping ones
            if marks["fat"] and rng.random() < 0.5:
                _put(buf, 4, ">I", rng.choice([2, 3, 5000, 0xFFFFFFFF]))
                _put(buf, 8 + 8, ">I", rng.choice([0, 8, 20, len(seed) - 4]))
            else:
                n = rng.choice([2, 64, 65, 5000])
                head = struct.pack(">2I", 0xCAFEBABE, n) + b"".join(
                    struct.pack(">5I", 0x0100000C, 0, rng.choice([0, 28, 4096]), len(seed), 12) for _ in range(min(n, 200)))
                buf = bytearray(head) + buf
        elif kind == 5 and marks["sig"]:  # bogus SuperBlob count and offsets
            s = rng.choice(marks["sig"])
            _put(buf, s + rng.choice((4, 8, 16, 20, 24)), ">I", rng.choice(nasty))
        elif kind == 6 and marks["symtab"]:  # huge symbol counts and offsets
            c = rng.choice(marks["symtab"])
            _put(buf, c + rng.choice((8, 12, 16, 20)), little + "I", rng.choice(nasty))
        elif kind == 7 and buf:  # random bytes in the load-command area
            end = min(len(buf), 8192)
            for _ in range(rng.randint(1, 16)):
                buf[rng.randrange(end)] = rng.getrandbits(8)
        elif kind == 8 and buf:  # random bytes anywhere
            for _ in range(rng.randint(1, 32)):
                buf[rng.randrange(len(buf))] = rng.getrandbits(8)
        elif kind == 9 and marks["cmd"]:  # a command that points back at itself: cmd loop attempt
            c = rng.choice(marks["cmd"])
            _put(buf, c + 4, little + "I", 8)
            _put(buf, c, little + "I", rng.choice([0xC, 0xD, 0x1C, 0x80000028, 0x19]))
    return bytes(buf)


_STATE: dict[str, object] = {}


def _init(seed_blobs: list[bytes], workdir: str) -> None:
    _STATE["seeds"] = seed_blobs
    _STATE["marks"] = [landmarks(s) for s in seed_blobs]
    _STATE["tables"] = (MachoLoadCommandsTable(), MachoInfoTable())
    _STATE["dir"] = workdir


def _run(args: tuple[int, int, float]) -> tuple[int, int, float, str | None]:
    """Run one batch; returns (inputs, error rows, slowest seconds, first failure)."""
    start, count, limit = args
    seeds: list[bytes] = _STATE["seeds"]  # type: ignore[assignment]
    marks = _STATE["marks"]
    tables = _STATE["tables"]
    path = os.path.join(str(_STATE["dir"]), f"input-{os.getpid()}")
    errors, slowest = 0, 0.0
    for i in range(start, start + count):
        rng = random.Random(i)
        k = rng.randrange(len(seeds))
        data = mutate(seeds[k], marks[k], rng)  # type: ignore[index]
        with open(path, "wb") as fh:
            fh.write(data)
        ctx = QueryContext.build({"path": [(Op.EQUALS, path)]})
        t = time.perf_counter()
        try:
            for table in tables:  # type: ignore[attr-defined]
                table_rows = list(table.generate(ctx))
                if not table_rows:
                    return (i - start, errors, slowest, f"input {i}: {table.name} returned no row at all")
                errors += sum(1 for r in table_rows if r.get("error"))
        except Exception as exc:  # noqa: BLE001 - the point is to catch anything
            return (i - start, errors, slowest, f"input {i} (seed {k}): {type(exc).__name__}: {exc}")
        took = time.perf_counter() - t
        slowest = max(slowest, took)
        if took > limit:
            return (i - start + 1, errors, slowest, f"input {i} (seed {k}) took {took:.2f}s")
    return (count, errors, slowest, None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0, help="first input number (inputs are reproducible by number)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--max-seed", type=int, default=1 << 20, help="largest corpus file used as a seed (bytes)")
    ap.add_argument("--limit", type=float, default=1.0, help="seconds one input may take")
    args = ap.parse_args(argv)

    seeds = writer_seeds() + corpus_seeds(args.max_seed)
    print(f"fuzzing with {len(seeds)} seeds, {args.inputs} inputs, {args.workers} workers")
    batch = 500
    jobs = [(s, min(batch, args.seed + args.inputs - s), args.limit) for s in range(args.seed, args.seed + args.inputs, batch)]
    done, errors, slowest, failures = 0, 0, 0.0, []
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as workdir, \
            Pool(args.workers, initializer=_init, initargs=(seeds, workdir)) as pool:
        for n, e, s, failure in pool.imap_unordered(_run, jobs):
            done, errors, slowest = done + n, errors + e, max(slowest, s)
            if failure:
                failures.append(failure)
    took = time.monotonic() - t0
    print(f"inputs run: {done}; error rows: {errors}; slowest input: {slowest * 1e3:.1f} ms; "
          f"{done / took:.0f} inputs/s; failures: {len(failures)}")
    for f in failures[:20]:
        print("  FAIL", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
