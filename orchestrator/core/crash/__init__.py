"""Linux kernel reports read from serial console logs, in the manner of syzkaller's pkg/report.

``find_reports`` lists every report of every boot (a health probe judges the new ones after each
boot); ``parse_console`` names the one that brought the last boot down. Both read the console once,
in linear time and bounded memory; the ``*_file`` forms read only the last ``DEFAULT_MAX_BYTES``.

Decisions, in the order the code makes them:

- Reports start at the lines of ``rules.RULES`` (BUG:, Oops, general protection fault, WARNING,
  KASAN/KMSAN/UBSAN, lockdep, hung task, lockups, RCU stalls, list/refcount checks, kmemleak,
  stack-protector, NMI, panic ...), for x86-64 and arm64 kernels from 2.6 to 6.x.
- Titles are normalized: the kind's words, `` in <function>`` and `` [<module>]`` of the guilty
  frame, e.g. "BUG: kernel NULL pointer dereference in tbs_match_template [testbed_sensor]". No
  address, offset, PID, CPU or timestamp: one bug gives one title on every cell and kernel (free
  text from the kernel, like a panic reason, has its numbers replaced by N and ADDR).
- The guilty frame is the first one that is not crash machinery, sanitizer, locking, allocation or
  generic library code. Core-kernel frames are skipped as syzkaller skips them (substrings of the
  name); a module's frames only when their name is such a function (``tbs_wait_channel`` is the
  module's own code, not a wait). Inlined frames are named by the function they were inlined into,
  so symbolized and raw consoles give the same title.
- The report that brought a boot down is the first one that means a broken kernel, up to the one
  the boot's panic line belongs to; without a panic, the boot's last report. A kdump capture
  kernel that boots after a panic does not count as a boot of its own.
- A report that cannot be trusted to name its bug (cut before its stack, its first line cut,
  messages dropped inside it, two tasks' dumps interleaved without printk caller ids, only a
  "Fatal exception" panic left) is flagged ``corrupted`` and its title keeps only what is certain.
- Everything a guest printed passes through ``lines.safe_text``: no ESC sequences, no control
  characters but tab, nothing XML 1.0 cannot carry.
"""

from orchestrator.core.crash.console import (
    DEFAULT_MAX_BYTES,
    find_reports,
    find_reports_in_file,
    parse_console,
    parse_console_file,
)
from orchestrator.core.crash.kinds import CrashKind
from orchestrator.core.crash.report import CrashReport

__all__ = [
    "DEFAULT_MAX_BYTES",
    "CrashKind",
    "CrashReport",
    "find_reports",
    "find_reports_in_file",
    "parse_console",
    "parse_console_file",
]
