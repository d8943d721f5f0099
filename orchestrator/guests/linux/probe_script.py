"""The facts a Linux guest reports about itself, gathered through the guest agent (not the network,
which the candidate may have cut): boot id, taint, and the panic sysctls. A shell script out, plain
``key=value`` lines back."""

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

from orchestrator.core.probe_rules import REQUIRED_SYSCTLS

BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"


def probe_script(sysctls: tuple[str, ...] = tuple(REQUIRED_SYSCTLS)) -> str:
    """POSIX sh, no dependencies beyond coreutils: it must work in any image."""
    names = " ".join(sysctls)
    return (
        f'printf "boot_id=%s\\n" "$(cat {BOOT_ID_PATH})"\n'
        'printf "tainted=%s\\n" "$(cat /proc/sys/kernel/tainted)"\n'
        f"for name in {names}; do\n"
        '  file=/proc/sys/$(printf %s "$name" | tr . /)\n'
        '  if [ -r "$file" ]; then printf "sysctl.%s=%s\\n" "$name" "$(cat "$file")"; fi\n'
        "done\n"
    )


@dataclass(frozen=True)
class GuestFacts:
    boot_id: str | None = None
    tainted: int | None = None
    sysctls: Mapping[str, str] = field(default_factory=dict)


def parse_facts(output: str) -> GuestFacts:
    values: dict[str, str] = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    tainted = values.get("tainted", "")
    return GuestFacts(
        boot_id=values.get("boot_id") or None,
        tainted=int(tainted) if tainted.isdigit() else None,
        sysctls={
            key.removeprefix("sysctl."): value for key, value in values.items() if key.startswith("sysctl.")
        },
    )


HEALTH_RC_MARK = "testbed-health-rc="


def health_command_line(command: str, limit_s: float) -> str:
    """The candidate's health check, bounded in time, run over the probe's one SSH connection.

    Its exit status comes back as the output's last line, and the line itself always exits 0:
    ssh's own 255 (no connection) then never mixes with a check that happens to exit 255.
    """
    return f"timeout {limit_s:g} sh -c {shlex.quote(command)} 2>&1; printf '\\n{HEALTH_RC_MARK}%s\\n' \"$?\""


def parse_health(output: str) -> tuple[int | None, str]:
    """(the check's exit status, what it printed); None when the status line never came back."""
    text, mark, status = output.rstrip("\n").rpartition("\n" + HEALTH_RC_MARK)
    if not mark:
        return None, output
    return (int(status) if status.strip().isdigit() else None), text.rstrip("\n")
