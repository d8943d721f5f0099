"""Files replaced whole: a reader sees the old content or the new, never half of either.

The temporary file has a unique name beside the target, so two processes writing the same file
at once (two reapers closing one dead run) each replace it whole instead of renaming each
other's temporary file away.
"""

import os
import tempfile
from pathlib import Path


def replace_file(path: Path, content: str | bytes, *, mode: int = 0o644) -> None:
    """Write content to path atomically (same directory, so the rename never crosses filesystems)."""
    data = content.encode() if isinstance(content, str) else content
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    temporary = Path(name)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        temporary.chmod(mode)
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
