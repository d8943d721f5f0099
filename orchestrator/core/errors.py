"""The testbed's own trouble, classed by who is to blame.

A candidate crashing is a *result* (``CellOutcome``), never an exception. Exceptions are for the
testbed's own trouble and carry a :class:`Blame`:

- ``TestbedError``           base; ``blame`` says who is at fault
  - ``ConfigurationError``   bad matrix, candidate manifest, settings, unknown image (exit 3)
  - ``InfrastructureError``  libvirt, QEMU, the image store, the guest channel, a host (inconclusive)
  - ``InternalError``        a bug in the testbed
  - ``CanceledError``        stopped by a person or by fail-fast

Adapters translate third-party exceptions (``libvirt.libvirtError``, ``OSError``,
``subprocess.CalledProcessError``) into these at the boundary.
"""

from pydantic import ValidationError

from orchestrator.core.outcomes import Blame


class TestbedError(Exception):
    """Base of the testbed's own errors."""

    blame: Blame = Blame.INTERNAL

    __test__ = False  # not a pytest test class, whatever its name says


class ConfigurationError(TestbedError):
    """The input (matrix, candidate, settings) is wrong; nothing was started."""

    blame = Blame.CONFIGURATION


class InfrastructureError(TestbedError):
    """The host, hypervisor, image store or guest channel failed: not the candidate's fault."""

    blame = Blame.INFRASTRUCTURE


class InternalError(TestbedError):
    """A bug in the testbed."""

    blame = Blame.INTERNAL


class CanceledError(TestbedError):
    """Work was stopped by a person or by fail-fast."""

    blame = Blame.CANCELED


def describe_validation_error(exc: ValidationError) -> str:
    """One indented line per problem, each starting with the dotted path of the field."""
    return "\n".join(
        f"  {'.'.join(str(part) for part in error['loc']) or '(top level)'}: {error['msg']}"
        for error in exc.errors()
    )
