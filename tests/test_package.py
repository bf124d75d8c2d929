"""The one-file artifacts: built here for every platform, started like osqueryd starts an extension."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
import yaml

from dyldwatch.deploy.artifact import (
    ARTIFACT_NAME,
    TARGETS,
    Artifact,
    artifact_wheels,
    build_artifact,
    compatible_tags,
)
from dyldwatch.deploy.bundle import write_bundle
from dyldwatch.deploy.layout import LAYOUTS, extensions_load_text, flags_text
from dyldwatch.tables import TABLES
from harness import FakeOsqueryd, constraint, context

SYSTEM_PYTHON = "/usr/bin/python3.11"
NATIVE = ("apsw", "numpy", "orjson", "xattr", "cffi", "pyyaml", "thrift")
pytestmark = pytest.mark.skipif(not os.path.exists(SYSTEM_PYTHON), reason=f"{SYSTEM_PYTHON} not installed")


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Artifact]:
    """linux-x86_64 and both macOS artifacts, built once per session (about 4 s each)."""
    out = tmp_path_factory.mktemp("package")
    return {p: build_artifact(p, out, progress=lambda _m: None)
            for p in ("linux-x86_64", "macos-arm64", "macos-x86_64")}


def clean_env(home: Path) -> dict[str, str]:
    """What osqueryd gives an autoloaded extension: no virtualenv, no PYTHONPATH."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "PEX_ROOT": str(home / ".pex")}


def test_linux_artifact_serves_osquery_from_a_clean_folder(artifacts: dict[str, Artifact], tmp_path: Path) -> None:
    art = artifacts["linux-x86_64"]
    assert art.path.read_bytes().startswith(f"#!{SYSTEM_PYTHON}\n".encode())
    host = tmp_path / "host"
    host.mkdir()
    ext = host / ARTIFACT_NAME
    ext.write_bytes(art.path.read_bytes())
    ext.chmod(0o755)
    manager = FakeOsqueryd(host)
    started = time.monotonic()
    proc = subprocess.Popen([str(ext), "--socket", manager.path, "--timeout", "5", "--interval", "0.5"],
                            cwd=host, env=clean_env(host), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        reg = manager.wait_registered(timeout=60)
        print(f"first start to registration: {time.monotonic() - started:.2f}s")
        assert reg.info.name == "dyldwatch"
        assert set(reg.registry["table"]) == set(TABLES)
        from harness import ExtensionConnection

        script = tmp_path / "x.scpt"
        script.write_bytes(b"FasdUAS 1.101.10\x0e\x00\x00\x00\x04\x0f\xff\xff")
        conn = ExtensionConnection(f"{manager.path}.{reg.uuid}")
        resp = conn.generate("applescript_info", context(constraint("path", (2, str(script)))))
        conn.close()
        assert resp.status.code == 0, resp.status.message
        assert [r["path"] for r in resp.response] == [str(script)]
    finally:
        manager.stop()
    try:
        assert proc.wait(timeout=15) is not None  # the extension exits when osqueryd dies
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("platform,arch", [("macos-arm64", "arm64"), ("macos-x86_64", "x86_64")])
def test_macos_artifact_carries_macos_wheels(artifacts: dict[str, Artifact], platform: str, arch: str) -> None:
    art = artifacts[platform]
    assert art.path.read_bytes().split(b"\n", 1)[0] == f"#!{TARGETS[platform].shebang}".encode()
    wheels = artifact_wheels(art.path)
    for dist in NATIVE:
        native = [w for w in wheels if w.lower().startswith(dist + "-")]
        assert native, f"{dist} missing from {platform}: {wheels}"
        tags = native[0][:-4].split("-")[-1]
        assert "macosx" in tags and (arch in tags or "universal2" in tags), native
        assert "-cp312-" in native[0]
    assert not any("manylinux" in w or "linux_" in w for w in wheels)
    assert not any(w.startswith("lief") for w in wheels)


@pytest.mark.parametrize("platform", ["macos-arm64", "macos-x86_64"])
def test_macos_artifact_lists_tables_with_a_linux_interpreter(artifacts: dict[str, Artifact], platform: str,
                                                             tmp_path: Path) -> None:
    """PEX_IGNORE_ERRORS lets pex boot with the pure wheels only; --list-tables stands in for natives."""
    env = {**clean_env(tmp_path), "PEX_IGNORE_ERRORS": "1"}
    proc = subprocess.run([SYSTEM_PYTHON, str(artifacts[platform].path), "--list-tables"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    listed = [line.split("\t")[0] for line in proc.stdout.splitlines() if not line.startswith("#")]
    assert listed == list(TABLES), proc.stderr[-2000:]
    assert "NOT loadable here" in proc.stdout and "numpy" in proc.stdout
    assert proc.returncode == 3  # a host check: non-zero unless every native module loads


def test_linux_list_tables_loads_every_native_module(artifacts: dict[str, Artifact], tmp_path: Path) -> None:
    proc = subprocess.run([str(artifacts["linux-x86_64"].path), "--list-tables"], env=clean_env(tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "native modules: all loaded" in proc.stdout


def test_artifacts_have_sha256_and_stay_small(artifacts: dict[str, Artifact]) -> None:
    for art in artifacts.values():
        digest = hashlib.sha256(art.path.read_bytes()).hexdigest()
        assert art.sha256 == digest
        assert (art.path.parent / f"{ARTIFACT_NAME}.sha256").read_text() == f"{digest}  {ARTIFACT_NAME}\n"
        assert art.size < 40_000_000, f"{art.target.name}: {art.size / 1e6:.1f} MB"
        assert os.stat(art.path).st_mode & 0o777 == 0o755
        with zipfile.ZipFile(art.path) as z:
            assert any(n.startswith(".deps/dyldwatch-") for n in z.namelist())


def test_compatible_tags_follow_the_target() -> None:
    linux = compatible_tags(TARGETS["linux-x86_64"])
    assert linux[0] == "cp311-cp311-manylinux_2_28_x86_64"
    assert "cp311-cp311-manylinux2014_x86_64" in linux and "cp311-cp311-manylinux1_x86_64" in linux
    assert "py3-none-any" in linux and not any("macosx" in t or "aarch64" in t for t in linux)
    mac = compatible_tags(TARGETS["macos-arm64"])
    assert "cp312-cp312-macosx_11_0_arm64" in mac and "cp312-cp312-macosx_11_0_universal2" in mac
    assert not any("x86_64" in t or "macosx_12" in t for t in mac)
    intel = compatible_tags(TARGETS["macos-x86_64"])
    assert "cp312-cp312-macosx_10_13_x86_64" in intel and not any("arm64" in t for t in intel)


def test_bundle_holds_configuration_packs_and_sums(artifacts: dict[str, Artifact], tmp_path: Path) -> None:
    arts = list(artifacts.values())
    write_bundle(tmp_path, arts, progress=lambda _m: None)
    for rel in ("osquery/linux/extensions.load", "osquery/macos/osquery.flags", "systemd/osqueryd.service",
                "launchd/com.dyldwatch.osqueryd.plist", "fleet/agent-options.yml", "README.md", "SHA256SUMS"):
        assert (tmp_path / rel).is_file(), rel
    for layout in LAYOUTS.values():
        assert (tmp_path / "osquery" / layout.folder / "osquery.flags").read_text() == flags_text(layout)
        assert (tmp_path / "osquery" / layout.folder / "extensions.load").read_text() == extensions_load_text(layout)
    fleet = yaml.safe_load((tmp_path / "fleet/agent-options.yml").read_text())
    exts = fleet["spec"]["agent_options"]["extensions"]
    assert {e["platform"] for e in exts.values()} == {"macos", "linux"}
    assert all(e["channel"] == "stable" for e in exts.values())
    sums = (tmp_path / "SHA256SUMS").read_text()
    assert all(f"{a.sha256}  {a.target.name}/{ARTIFACT_NAME}" in sums for a in arts)
    for target in ("osquery", "fleetctl", "fleet-gitops"):
        assert any((tmp_path / "packs" / target).rglob("*")), target
