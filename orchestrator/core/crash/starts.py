"""Which line starts a report: the rule table (``rules.RULES``) matched cheaply.

The scanner asks ``may_start`` of every line that holds a finder keyword (one regex of literals, in C)
and ``match_start`` of the few that pass, and of every line inside an open report. A line is tried
only against the rules of the finder keywords it holds, in table order.
"""

import re

from orchestrator.core.crash.rules import RULES
from orchestrator.core.crash.start_rule import FINDER_KEYWORDS, Start, StartRule


def _finder_of(rule: StartRule) -> str:
    """The finder keyword every line this rule matches holds (the first one its keywords contain)."""
    return next(finder for finder in FINDER_KEYWORDS if any(finder in keyword for keyword in rule.keywords))


_GROUPS: tuple[tuple[str, tuple[tuple[int, StartRule], ...]], ...] = tuple(
    (finder, tuple((index, rule) for index, rule in enumerate(RULES) if _finder_of(rule) == finder))
    for finder in FINDER_KEYWORDS
)
# The most specific keyword of every rule (its last), in one regex: "harness: WARNING: step 3 took
# 120 ms" then costs one C call, not a loop over the rules.
_SPECIFIC = re.compile(
    "|".join(re.escape(k) for k in sorted({rule.keywords[-1] for rule in RULES}, key=len, reverse=True))
)


def _holds(text: str, keywords: tuple[str, ...]) -> bool:
    return all(keyword in text for keyword in keywords)


def may_start(text: str) -> bool:
    """Cheap test: could any rule match this text (or a kernel line inside it)? Never False when one does."""
    return _SPECIFIC.search(text) is not None


def match_start(text: str) -> Start | None:
    """The rule a console line starts a report with; None for every other line."""
    best: Start | None = None
    best_index = len(RULES)
    for finder, group in _GROUPS:
        if finder not in text:
            continue
        for index, rule in group:
            if index >= best_index:
                break
            if not _holds(text, rule.keywords):
                continue
            found = rule.pattern.match(text) if rule.anchored else rule.pattern.search(text)
            if found:
                best, best_index = Start(rule, found), index
                break
    return best
