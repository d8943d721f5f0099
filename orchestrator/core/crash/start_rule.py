"""The vocabulary of the report-start table: finder keywords, strategies, rules and matches.

A rule says how one kind of report starts (its first line), what its title says, and where its guilty
frame is printed (its strategy). ``rules.RULES`` is the table; ``starts`` matches lines against it.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from orchestrator.core.crash.frames import (
    HANG_SKIP,
    HANG_SUBSTRINGS,
    LEAK_SKIP,
    STALL_SKIP,
    SkipList,
    substrings,
)
from orchestrator.core.crash.kinds import CrashKind

FINDER_KEYWORDS = (
    "BUG:", "kernel BUG", "(Not tainted):", "(Tainted:", "WARNING:", "INFO:", "not syncing", "[#",
    "protection fault", "double fault", "Unhandled fault", "handle kernel", "UBSAN:", "corruption",
    "refcount_t", "kmemleak", "NMI", "hard LOCKUP",
)  # fmt: skip
"""Every line a rule matches holds one of these (``[#`` is the oops counter of Oops:, invalid opcode:,
divide error:, Internal error: ...; the tainted notes are SLUB's "BUG kmalloc-64 (Not tainted): ...").
Each costs one pass over the console at C speed, so the list stays short and specific: "BUG" alone
would stop the scanner at every "BUG count 0" a sensor prints."""


# "WARNING:" and "INFO:" are also printed by test harnesses and daemons; the scanner looks for them
# only where a kernel report could follow (a refinement must match every line a rule of its keyword
# matches: tests/unit/test_crash_console.py checks it on every fixture).
FINDER_REFINEMENTS: dict[str, re.Pattern[str]] = {
    "WARNING:": re.compile(
        r"WARNING: (?:CPU:|at |possible |inconsistent |suspicious |bad unlock |held lock |lock held |Nested "
        r"|Invalid |kernel stack |\[|[\w/.+-]+:\d+ at |\S+ still has locks|\S+-safe -> )"
    ),
    "INFO:": re.compile(
        r"INFO: (?:task |rcu_|possible |inconsistent |suspicious |bad unlock |held lock |lock held |Nested "
        r"|Invalid |trying |\S+ still has locks|\S+-safe -> )"
    ),
}


class Strategy(StrEnum):
    """Where a kind of report names its guilty function."""

    FAULT = "fault"  # the faulting site (RIP:, IP:, pc :) first, then the call trace
    WARNING = "warning"  # the function on the WARNING line, then as FAULT
    HEADER = "header"  # the function on the first line (KASAN, KMSAN), then the first stack
    STACK = "stack"  # the first call trace
    HANG = "hang"  # the first call trace, past the functions tasks wait in
    INTERRUPTED = "interrupted"  # the kernel context a lockup, stall or NMI interrupted, past its loop
    STALL = "stall"  # the first call trace, past the loop (corrupted stack end)
    LOCKDEP = "lockdep"  # the lock sites ("at: f+0x..") then the stack
    LEAK = "leak"  # the allocation backtrace, past the allocators
    PANIC = "panic"  # the panic's own stack
    NONE = "none"  # the report names no function


_STRATEGY_SKIPS: dict[Strategy, tuple[re.Pattern[str] | None, tuple[str, ...]]] = {
    Strategy.HANG: (HANG_SKIP, HANG_SUBSTRINGS),
    Strategy.INTERRUPTED: (STALL_SKIP, ("apic_timer_interrupt", "rcu")),
    Strategy.STALL: (STALL_SKIP, ()),
    Strategy.LEAK: (
        LEAK_SKIP,
        ("kmemleak", "mmap", "kmem", "slab", "alloc", "create_object", "idr_get", "list_lru_init",
        "kasprintf",
         "kvasprintf", "pcpu_create", "strdup", "strndup", "memdup"),
    ),
}  # fmt: skip

Words = Callable[[re.Match[str]], str]


def _fixed(words: str) -> Words:
    return lambda _match: words


@dataclass(frozen=True)
class StartRule:
    """One way a report starts."""

    kind: CrashKind
    keywords: tuple[str, ...]  # substrings every line it matches holds: cheap tests before the pattern
    pattern: re.Pattern[str]
    words: Words  # the title before " in <function>"
    strategy: Strategy
    skip: SkipList  # the frames this kind of report looks past
    companion: bool = False  # inside an open report it belongs to it (Oops: after BUG:, the panic line)
    panic: bool = False  # a "Kernel panic - not syncing" line
    needs_site: bool = True  # a title without a function means the report was damaged
    free_text: bool = False  # the words come from the line's own text: a cut line makes them unreliable
    anchored: bool = False  # the pattern must match at the start of the line
    corrupted: str | None = None  # the line itself shows the report is damaged
    site_line: re.Pattern[str] | None = None  # a later line that names the function (group "site")


@dataclass(frozen=True)
class Start:
    """A line that starts (or continues) a report, and the rule it matched."""

    rule: StartRule
    match: re.Match[str]

    @property
    def kind(self) -> CrashKind:
        return self.rule.kind

    def group(self, name: str) -> str | None:
        return self.match.groupdict().get(name)


def rule(
    kind: CrashKind,
    keyword: str | tuple[str, ...],
    pattern: str,
    words: str | Words,
    strategy: Strategy,
    *,
    skip: tuple[str, ...] = (),
    companion: bool = False,
    panic: bool = False,
    needs_site: bool = True,
    free_text: bool = False,
    anchored: bool = False,
    corrupted: str | None = None,
    site_line: str | None = None,
) -> StartRule:
    anchored_skip, core_skip = _STRATEGY_SKIPS.get(strategy, (None, ()))
    return StartRule(
        kind=kind,
        keywords=(keyword,) if isinstance(keyword, str) else keyword,
        pattern=re.compile(pattern),
        words=_fixed(words) if isinstance(words, str) else words,
        strategy=strategy,
        skip=SkipList(anchored_skip, substrings(*skip, *core_skip)),
        companion=companion,
        panic=panic,
        needs_site=needs_site,
        free_text=free_text,
        anchored=anchored,
        corrupted=corrupted,
        site_line=re.compile(site_line) if site_line else None,
    )
