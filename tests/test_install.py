"""`dyldwatch install`: osquery's layout, root-owned and closed to others, or a clear refusal."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from dyldwatch.cli import main
from dyldwatch.deploy.install import InstallError, plan_install

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="checks root ownership; run as root")


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    p = tmp_path / "build" / "dyldwatch.ext"
    p.parent.mkdir()
    p.write_text("#!/bin/sh\nexit 0\n")
    return p


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["install", *args])
    return result.exit_code, result.output


def assert_safe(path: Path, mode: int) -> None:
    st = path.stat()
    assert st.st_uid == 0 and st.st_gid == 0, path
    assert stat.S_IMODE(st.st_mode) == mode, f"{path}: {stat.S_IMODE(st.st_mode):04o}"
    assert not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


@pytest.mark.parametrize("system,cfg", [("linux", "etc/osquery"), ("darwin", "var/osquery")])
def test_install_produces_osquery_layout(artifact: Path, tmp_path: Path, system: str, cfg: str) -> None:
    prefix = tmp_path / "root"
    code, out = run("--prefix", str(prefix), "--artifact", str(artifact), "--system", system)
    assert code == 0, out
    ext = prefix / "usr/local/osquery/extensions/dyldwatch.ext"
    assert ext.read_bytes() == artifact.read_bytes()
    assert_safe(ext, 0o755)
    assert_safe(ext.parent, 0o755)
    assert (prefix / cfg / "extensions.load").read_text() == "/usr/local/osquery/extensions/dyldwatch.ext\n"
    flags = (prefix / cfg / "osquery.flags").read_text()
    assert f"--extensions_autoload=/{cfg}/extensions.load" in flags
    for flag in ("--extensions_require=dyldwatch", "--extensions_timeout=", "--extensions_interval="):
        assert flag in flags
    assert_safe(prefix / cfg / "osquery.flags", 0o644)
    assert_safe(prefix / cfg, 0o755)
    # Idempotent: a second install replaces the file and adds no duplicate lines.
    code, out = run("--prefix", str(prefix), "--artifact", str(artifact), "--system", system)
    assert code == 0, out
    assert (prefix / cfg / "extensions.load").read_text().count("dyldwatch.ext") == 1
    assert (prefix / cfg / "osquery.flags").read_text().count("--extensions_require") == 1


def test_install_keeps_existing_flags(artifact: Path, tmp_path: Path) -> None:
    prefix = tmp_path / "root"
    (prefix / "etc/osquery").mkdir(parents=True, mode=0o755)
    (prefix / "etc/osquery/osquery.flags").write_text("--config_plugin=tls\n--extensions_timeout=30")
    code, out = run("--prefix", str(prefix), "--artifact", str(artifact), "--system", "linux")
    assert code == 0, out
    flags = (prefix / "etc/osquery/osquery.flags").read_text().splitlines()
    assert flags[:2] == ["--config_plugin=tls", "--extensions_timeout=30"]
    assert "--extensions_timeout=10" not in flags and "--extensions_require=dyldwatch" in flags


@pytest.mark.parametrize("bad", ["prefix", "extensions"])
def test_world_writable_directory_is_refused(artifact: Path, tmp_path: Path, bad: str) -> None:
    prefix = tmp_path / "root"
    target = prefix if bad == "prefix" else prefix / "usr/local/osquery/extensions"
    target.mkdir(parents=True)
    target.chmod(0o777)
    code, out = run("--prefix", str(prefix), "--artifact", str(artifact), "--system", "linux")
    assert code != 0
    assert "install refused" in out and str(target) in out and "writable by others" in out and "chmod go-w" in out
    assert not (prefix / "usr/local/osquery/extensions/dyldwatch.ext").exists()


def test_group_writable_and_foreign_owner_are_refused(artifact: Path, tmp_path: Path) -> None:
    prefix = tmp_path / "root"
    prefix.mkdir()
    prefix.chmod(0o775)
    with pytest.raises(InstallError, match="writable by its group"):
        plan_install(artifact, prefix, "linux")
    prefix.chmod(0o755)
    os.chown(prefix, 1234, 0)
    with pytest.raises(InstallError, match="owned by uid 1234"):
        plan_install(artifact, prefix, "linux")


def test_dry_run_writes_nothing(artifact: Path, tmp_path: Path) -> None:
    prefix = tmp_path / "root"
    code, out = run("--prefix", str(prefix), "--artifact", str(artifact), "--system", "darwin", "--dry-run")
    assert code == 0, out
    assert f"would install {prefix}/usr/local/osquery/extensions/dyldwatch.ext (root:root 0755)" in out
    assert f"{prefix}/var/osquery/osquery.flags" in out
    assert not prefix.exists()


def test_refusals_say_what_to_do(artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = run("--prefix", str(tmp_path / "r"), "--artifact", str(tmp_path / "missing.ext"))
    assert code != 0 and "not found" in out and "dyldwatch package" in out
    monkeypatch.setattr(os, "geteuid", lambda: 501)
    code, out = run("--artifact", str(artifact))
    assert code != 0 and "run it as root" in out and "--prefix" in out
