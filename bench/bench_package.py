"""Artifact size per platform and cold start to registration, against baselines measured in the same run.

Start-up is timed like osqueryd sees it: process spawn until `registerExtension` reaches the fake
manager (tests/harness.py). `first` is a fresh PEX_ROOT (the artifact unpacks itself once per
version), `warm` every later start. Baselines: `python -c pass` (the interpreter alone) and
`python -m dyldwatch extension` from the virtualenv. Only this machine's platform can be started;
the others report size only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "tests"), str(Path(__file__).resolve().parents[1] / "src")]

from dyldwatch.deploy.artifact import TARGETS, build_artifact, host_platform  # noqa: E402
from harness import FakeOsqueryd  # noqa: E402

REPEAT = 5


def to_registration(cmd: list[str], env: dict[str, str]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        manager = FakeOsqueryd(tmp)
        started = time.perf_counter()
        proc = subprocess.Popen([*cmd, "--socket", manager.path, "--timeout", "5", "--interval", "1"], cwd=tmp,
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            manager.wait_registered(timeout=60)
            return time.perf_counter() - started
        finally:
            manager.stop()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def spawn(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, env=env, check=True)
    return time.perf_counter() - started


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-package-"))
    here = host_platform()
    clean = {"PATH": "/usr/bin:/bin", "HOME": str(work)}
    venv_env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    base_pass = min(spawn([sys.executable, "-c", "pass"], venv_env) for _ in range(REPEAT))
    base_venv = min(to_registration([sys.executable, "-m", "dyldwatch", "extension"], venv_env)
                    for _ in range(REPEAT))
    print(f"baseline python -c pass                          {base_pass * 1000:7.0f} ms")
    print(f"baseline venv python -m dyldwatch extension       {base_venv * 1000:7.0f} ms to registration")
    try:
        for name in TARGETS:
            build_started = time.perf_counter()
            art = build_artifact(name, work / "out", progress=lambda _m: None)
            line = (f"{name:14} {art.size / 1e6:5.1f} MB  build {time.perf_counter() - build_started:4.1f}s  "
                    f"sha256 {art.sha256[:16]}…")
            if name == here:
                first = []
                for i in range(3):
                    env = {**clean, "PEX_ROOT": str(work / f"pexroot-{i}")}
                    first.append(to_registration([str(art.path)], env))
                env = {**clean, "PEX_ROOT": str(work / "pexroot-0")}
                warm = min(to_registration([str(art.path)], env) for _ in range(REPEAT))
                line += (f"  first start {min(first) * 1000:5.0f} ms ({min(first) / base_venv:.2f}x venv)"
                         f"  warm {warm * 1000:5.0f} ms ({warm / base_venv:.2f}x venv, {warm / base_pass:.1f}x "
                         "python -c pass)")
            else:
                line += "  (start not measurable on this machine)"
            print(line, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
