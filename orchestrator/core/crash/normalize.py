"""Free text in titles without what changes from one cell to the next: addresses, numbers, CPUs, PIDs.

Most title words are fixed per kind ("general protection fault"); a few come from what the kernel
printed (the text of a generic ``BUG:``, a panic reason, a UBSAN check). Those pass through here so
that the same bug on two cells gives the same title.
"""

import re

_ADDRESS = re.compile(r"(?<![\w])(?:0x[0-9a-fA-F]+|[0-9a-fA-F]{8,})(?![\w])")
_MAX_FREE_TEXT = 200  # titles are short; this also bounds the work of the substitutions below
_CPU = re.compile(r"\s*(?:on\s+)?CPU\s*#?\s*\d+")
_TASK_ID = re.compile(r"(?<=[\w.-])/\d+(?:/\d+)*")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])")
_SPACES = re.compile(r"\s+")
# Where a generic "BUG: ..." stops naming the bug and starts printing its circumstances.
_DESCRIPTION_END = re.compile(
    r",\s|:\s|;|!|\s+at\s|\s+in\s|\s\(|\s\[|\s+-\s|\s+on\s+CPU|\s\S*[:=]\S|\.\s*$"
)


def tidy(text: str) -> str:
    """Addresses become ADDR, other numbers N; CPU numbers and PIDs go; spaces collapse."""
    text = _ADDRESS.sub("ADDR", text[:_MAX_FREE_TEXT])
    text = _CPU.sub("", text)
    text = _TASK_ID.sub("", text)
    text = _NUMBER.sub("N", text)
    return _SPACES.sub(" ", text).strip(" .,;:")


def description(text: str) -> str:
    """The naming part of a free-form kernel message, tidied.

    "sleeping function called from invalid context at kernel/x.c:580" -> "sleeping function called
    from invalid context"; "workqueue lockup - pool cpus=0 ..." -> "workqueue lockup".
    """
    text = text[:_MAX_FREE_TEXT]
    end = _DESCRIPTION_END.search(text)
    return tidy(text[: end.start()] if end else text)
