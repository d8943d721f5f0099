"""A kernel report as read from a serial console: what the engine, the API and people see."""

from dataclasses import dataclass, field

from orchestrator.core.crash.kinds import SURVIVABLE_KINDS, CrashKind


@dataclass(frozen=True)
class CrashReport:
    """One kernel report. Everything textual in it was printed by the guest and made terminal-safe."""

    kind: CrashKind
    title: str  # normalized: kind words + guilty function (+ [module]); stable across cells and boots
    first_line: str  # the report's first line as printed (timestamp removed): evidence
    function: str | None  # the guilty frame: the first that is not crash machinery or generic code
    module: str | None  # the module of the guilty frame; None for the core kernel
    panic_reason: str | None  # what followed "Kernel panic - not syncing:"
    tainted: str | None  # the taint flags printed with the report; None when "Not tainted"
    modules_linked: tuple[str, ...] = ()
    excerpt: tuple[str, ...] = field(default=(), repr=False)  # the report's console lines, timestamps kept
    boot: int = 0  # 0-based index of the boot (kernel banner) the report appeared in
    uptime_s: float | None = None  # kernel timestamp of the first line, when printed
    corrupted: bool = False  # truncated or interleaved beyond repair: the title says only what is certain
    corrupted_reason: str | None = None  # why, for people
    others: tuple[str, ...] = ()  # parse_console only: titles of the other reports of that boot
    kernel_died: bool = False  # an oops marker ([#n]) or a panic belongs to this report

    @property
    def fatal(self) -> bool:
        """The kernel is broken (BUG, Oops, GPF, KASAN, lockups, hung task, panic, ...).

        False for WARNING-class reports the kernel runs on after (WARNING, lockdep, UBSAN, refcount,
        list corruption, memory leak) unless the report itself shows the kernel dying.
        """
        return self.kind not in SURVIVABLE_KINDS or self.kernel_died or self.panic_reason is not None

    def as_dict(self) -> dict[str, object]:
        """JSON-ready."""
        return {
            "kind": str(self.kind),
            "title": self.title,
            "first_line": self.first_line,
            "function": self.function,
            "module": self.module,
            "panic_reason": self.panic_reason,
            "tainted": self.tainted,
            "modules_linked": list(self.modules_linked),
            "excerpt": "\n".join(self.excerpt),
            "fatal": self.fatal,
            "boot": self.boot,
            "uptime_s": self.uptime_s,
            "corrupted": self.corrupted,
            "corrupted_reason": self.corrupted_reason,
            "others": list(self.others),
            "kernel_died": self.kernel_died,
        }
