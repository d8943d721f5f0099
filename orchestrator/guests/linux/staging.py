"""How artifacts travel into a Linux guest: one generated sh script, no Python needed in the guest."""

import base64
import io
import shlex
import tarfile
from pathlib import Path

STAGE_DIR = "/var/tmp/testbed-candidate"  # noqa: S108 - a path inside the guest, owned by root


def staging_script(stage_dir: str, files: list[tuple[str, Path]]) -> str:
    """A POSIX sh script that writes the artifacts into ``stage_dir`` in the guest.

    It travels with ansible's ``script`` module: a file transfer and ``sh``, no Python in the
    guest, which under TCG saves seconds per module. The digests are checked after it ran.
    """
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for name, path in files:
            tar.add(path, arcname=name)
    payload = base64.encodebytes(archive.getvalue()).decode()
    return (
        "#!/bin/sh\nset -eu\n"
        f"mkdir -p -m 0700 {shlex.quote(stage_dir)}\n"
        f"cd {shlex.quote(stage_dir)}\n"
        "base64 -d <<'TESTBED_ARTIFACTS' | tar -xf - --no-same-owner\n"
        f"{payload}TESTBED_ARTIFACTS\n"
    )
