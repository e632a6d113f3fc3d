"""Make sure the real servers the tests use are installed; run by `make test` before pytest.

Checks for the Prometheus, Alertmanager and Redis binaries. When one is missing and we are root,
installs the Debian packages with a `policy-rc.d` in place so that no service auto-starts (and binds
0.0.0.0). Prints one line saying what it found or installed. It never fails the build: without the
servers the tests skip, or fail when MODELWATCH_REQUIRE_SERVERS=1 (see tests/support/servers/).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BINARIES = (
    "prometheus",
    "promtool",
    "prometheus-alertmanager",
    "amtool",
    "redis-server",
    "chromium",  # the status page test's headless browser (health)
    "chromedriver",
)
PACKAGES = (
    "prometheus",
    "prometheus-alertmanager",
    "redis-server",
    "chromium",
    "chromium-driver",
)
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
POLICY_DENY_ALL = "#!/bin/sh\n# Written by modelwatch tests/servers_setup.py.\nexit 101\n"
# Where Debian puts the binaries, in case PATH lacks them (e.g. /usr/sbin for non-root).
EXTRA_DIRS = ("/usr/bin", "/usr/sbin", "/usr/local/bin")
APT_TIMEOUT_S = 600


def find_binary(name: str) -> str | None:
    """Absolute path of `name` on PATH or in the usual Debian directories, or None."""
    found = shutil.which(name)
    if found:
        return found
    path = os.pathsep.join(EXTRA_DIRS)
    return shutil.which(name, path=path)


def missing_binaries() -> list[str]:
    return [name for name in BINARIES if find_binary(name) is None]


def _policy_denies_all() -> bool:
    if not os.access(POLICY_RC_D, os.X_OK):
        return False
    try:
        result = subprocess.run([str(POLICY_RC_D)], check=False, timeout=10, capture_output=True)
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 101


def _run_apt(args: list[str], log: Path) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    with log.open("ab") as out:
        subprocess.run(
            ["apt-get", "-o", "DPkg::Lock::Timeout=300", *args],
            check=True,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            timeout=APT_TIMEOUT_S,
        )


def install(log: Path) -> None:
    """apt-get update + install with a deny-all policy-rc.d in place; restores the old one after."""
    previous: bytes | None = POLICY_RC_D.read_bytes() if POLICY_RC_D.exists() else None
    wrote_policy = False
    if not _policy_denies_all():
        POLICY_RC_D.write_text(POLICY_DENY_ALL)
        POLICY_RC_D.chmod(0o755)
        wrote_policy = True
    try:
        _run_apt(["update"], log)
        _run_apt(["install", "-y", "--no-install-recommends", *PACKAGES], log)
    finally:
        if wrote_policy:
            if previous is None:
                POLICY_RC_D.unlink(missing_ok=True)
            else:
                POLICY_RC_D.write_bytes(previous)


def main() -> int:
    missing = missing_binaries()
    if not missing:
        print(f"servers_setup: found {', '.join(BINARIES)}; nothing to install")
        return 0
    if os.geteuid() != 0:
        print(
            f"servers_setup: missing {', '.join(missing)} and not root, so not installing; "
            "the tests that need them will skip (or fail with MODELWATCH_REQUIRE_SERVERS=1)"
        )
        return 0
    if find_binary("apt-get") is None:
        print(f"servers_setup: missing {', '.join(missing)} and no apt-get here; not installing")
        return 0
    log = Path(tempfile.gettempdir()) / "modelwatch-servers-setup.log"
    try:
        install(log)
    except (OSError, subprocess.SubprocessError) as exc:
        print(
            f"servers_setup: missing {', '.join(missing)}; installing {' '.join(PACKAGES)} failed "
            f"({exc}; see {log}); the tests that need them will skip or fail"
        )
        return 0
    still_missing = missing_binaries()
    if still_missing:
        print(
            f"servers_setup: installed {' '.join(PACKAGES)} but {', '.join(still_missing)} "
            f"still missing (see {log})"
        )
    else:
        print(f"servers_setup: was missing {', '.join(missing)}; installed {' '.join(PACKAGES)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
