"""What the lines of one report say: its stacks, faulting sites, lock sites and the facts around them.

A report is read once, top to bottom, into sections: the head (first line, registers), each call
trace ("Call Trace:", "Call trace:", "backtrace:", "stack backtrace:"), and auxiliary stacks that
name nobody's bug (KASAN's "Allocated by task", NMI backtraces of other CPUs). A panic absorbed
by the report opens sections of its own, so that the panic's stack is never taken for the bug's.
"""

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from orchestrator.core.crash.frames import (
    Frame,
    parse_arm32_caller,
    parse_frame,
    parse_register_site,
    parse_site,
)
from orchestrator.core.crash.lines import ConsoleLine

_TRACE_HEADER = re.compile(
    r"^(?:Call [Tt]race:?|Backtrace:|stack backtrace:|backtrace(?: \(crc [0-9a-f]+\))?:"
    r"|\.\.\. which became .{1,80} at:)"  # lockdep: the stack where a lock became irq-safe
)
_AUX_HEADER = re.compile(
    r"^(?:Allocated by task|Freed by task|Last potentially related work creation|Second to last potentially"
    r"|The buggy address belongs|Memory state around|Uninit was (?:created|stored)"
    r"|Local variable .{1,80} created at"
    r"|NMI backtrace for cpu|Sending NMI from CPU|Showing all locks held)"
)
_STACK_MARKER = re.compile(r"^<(?P<closing>/?)(?P<name>IRQ|NMI|TASK|EOI|SOFTIRQ|#DF|#MC|#VC|DB\d?)>\s*")
_INTERRUPT_ENTRY = re.compile(r"apic_timer_interrupt|^el1h?_64_irq|^el1_irq$|^__irq_svc$")
_SITE_PREFIXES = ("RIP:", "IP:", "EIP:", "pc ", "pc:", "PC is at", "NIP")
_LOCK_SITE = re.compile(r", at: (?P<site>.*)$")
_TAINTED = re.compile(r"Tainted: (?P<flags>[A-Z][A-Z ]*?)(?:\s+-+)?\s+\d")  # RHEL adds a "----" column
_MODULES_LINKED = re.compile(r"Modules linked in:(?P<modules>.*)")
# KASAN's access: "Read of size 8 at addr ..." (4.x: "... by task ...")
_ACCESS = re.compile(r"\b(?P<access>Read|Write) (?:of size \d+ (?:at addr|by task)|at addr)")
_LIST_MESSAGE = re.compile(r"(?P<op>h?list_\w+) corruption")
_REFCOUNT_MESSAGE = re.compile(r"refcount_t:? (?P<what>[^.,]{1,80}?)(?:\.|,| at |$)")
_DIE_MARKER = re.compile(r"\[#\d+\]")
_TASK_IDENTITY = re.compile(r"CPU: (?P<cpu>\d+) (?:UID: \d+ )?PID: (?P<pid>\d+)")


@dataclass(frozen=True, slots=True)
class Section:
    kind: str  # "head", "trace" (a call trace) or "aux" (a stack that names nobody's bug)
    after_panic: bool  # printed after the panic line this report absorbed


@dataclass(frozen=True, slots=True)
class Located:
    """A frame and where the report printed it."""

    frame: Frame
    source: str  # "site" (a register line: RIP/pc), "trace" (a stack line), "lock" (lockdep's "at: f")
    section: int
    after_interrupt: bool  # after </IRQ> or </NMI>: the context the interrupt interrupted


@dataclass
class Body:
    """The parsed report."""

    frames: list[Located] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    tainted: str | None = None
    modules_linked: tuple[str, ...] = ()
    access: str | None = None  # KASAN: "Read" or "Write"
    list_op: str | None = None  # "list_add" when the report prints a list corruption message
    refcount_problem: str | None = None  # "underflow; use-after-free" when it prints a refcount_t message
    died: bool = False  # an oops marker ([#1]) was printed
    pids: set[str] = field(default_factory=set)  # of the "CPU: n PID: m" lines before the panic

    def has_stack(self) -> bool:
        return bool(self.frames)


class _Reader:
    def __init__(self, starts_with_panic: bool) -> None:
        self.body = Body(sections=[Section("head", starts_with_panic)])
        self.after_panic = starts_with_panic
        self.after_interrupt = False
        self.lock_site_next = False

    def add(self, located_frame: Frame, source: str) -> None:
        section = len(self.body.sections) - 1
        self.body.frames.append(Located(located_frame, source, section, self.after_interrupt))

    def open_section(self, kind: str) -> None:
        self.body.sections.append(Section(kind, self.after_panic))
        self.after_interrupt = False

    def read(self, text: str) -> None:
        if text.startswith("kmemleak: "):  # kmemleak prefixes every line of its report
            text = text[len("kmemleak: ") :]
        stripped = text.lstrip()
        marker = _STACK_MARKER.match(stripped)
        if marker:
            name = marker.group("name")
            # </IRQ> or </NMI>, and 3.x's <EOI>: below it, the context the interrupt interrupted
            if (marker.group("closing") and name in ("IRQ", "NMI", "SOFTIRQ")) or name == "EOI":
                self.after_interrupt = True
            stripped = stripped[marker.end() :]
            if not stripped:
                return
        if stripped.startswith("Exception stack("):  # 32-bit arm: below it, the interrupted context
            self.after_interrupt = True
            return
        if _TRACE_HEADER.match(stripped):
            self.open_section("trace")
            return
        if _AUX_HEADER.match(stripped):
            self.open_section("aux")
            return
        frame = parse_frame(stripped)
        if frame is not None:
            self.add(frame, "lock" if self.lock_site_next else "trace")
            self.lock_site_next = False
            if _INTERRUPT_ENTRY.search(frame.function):  # below it, the context the interrupt interrupted
                self.after_interrupt = True
            caller = parse_arm32_caller(stripped)
            if caller is not None:
                self.add(caller, "trace")
            return
        if stripped.startswith(_SITE_PREFIXES):
            site = parse_register_site(stripped)
            if site is not None:
                self.add(site, "site")
                return
        self.read_facts(text)

    def read_facts(self, text: str) -> None:
        body = self.body
        lock = _LOCK_SITE.search(text) if ", at: " in text else None
        if lock:
            site = parse_site(lock.group("site"))
            if site is not None:
                self.add(site, "lock")
        self.lock_site_next = text.endswith(" at:")
        if body.tainted is None and "Tainted: " in text:
            tainted = _TAINTED.search(text)
            body.tainted = tainted.group("flags").strip() if tainted else None
        if not body.modules_linked and "Modules linked in:" in text:
            linked = _MODULES_LINKED.search(text)
            body.modules_linked = tuple(linked.group("modules").split()) if linked else ()
        if body.access is None and (" at addr" in text or " of size " in text):
            access = _ACCESS.search(text)
            body.access = access.group("access") if access else None
        if body.list_op is None and " corruption" in text:
            listed = _LIST_MESSAGE.search(text)
            body.list_op = listed.group("op") if listed else None
        if body.refcount_problem is None and "refcount_t" in text:
            refcount = _REFCOUNT_MESSAGE.search(text)
            body.refcount_problem = refcount.group("what") if refcount else None
        if not body.died and "[#" in text:
            body.died = _DIE_MARKER.search(text) is not None
        if "PID: " in text and not self.after_panic and self.body.sections[-1].kind != "aux":
            identity = _TASK_IDENTITY.search(text)
            if identity:  # not the CPU: a preemptible task may move between two lines of its report
                body.pids.add(identity.group("pid"))


def read_body(lines: Sequence[ConsoleLine], panic_lines: Collection[int]) -> Body:
    """Parse a report's lines; ``panic_lines`` are the indexes of the panic lines it absorbed."""
    reader = _Reader(starts_with_panic=0 in panic_lines)
    for index, line in enumerate(lines):
        if index in panic_lines and index > 0:
            reader.after_panic = True
            reader.open_section("head")
        reader.read(line.text)
    return reader.body
