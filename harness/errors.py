"""Errors the harness raises for bad input: each names the file, the field and a fix."""

from __future__ import annotations

from os import PathLike


class HarnessError(Exception):
    """A user-facing error: one line naming file, field, the problem and a fix.

    ``str(err)`` renders ``<file>: <field>: <message> (fix: <hint>)`` with the parts
    that are known; the plugin prints it without a traceback.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | PathLike[str] | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.file = str(file) if file is not None else None
        self.field = field
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        """The one-line form: ``file: field: message (fix: hint)``."""
        parts = [p for p in (self.file, self.field) if p]
        head = ": ".join([*parts, self.message])
        return f"{head} (fix: {self.hint})" if self.hint else head

    def with_context(
        self, *, file: str | PathLike[str] | None = None, field_prefix: str | None = None
    ) -> HarnessError:
        """A copy of this error located in ``file`` and under ``field_prefix``."""
        field = self.field
        if field_prefix:
            field = f"{field_prefix}.{field}" if field else field_prefix
        return type(self)(
            self.message,
            file=file if file is not None else self.file,
            field=field,
            hint=self.hint,
        )


class SpecError(HarnessError):
    """A suite file is malformed: bad YAML, unknown key, wrong type, bad value."""


class UnknownNameError(HarnessError):
    """A name (metric, model, dataset, method, corruption) is not registered."""


class DataError(HarnessError):
    """A dataset is malformed: missing image, bad annotation, empty split."""


class CheckpointError(HarnessError):
    """A checkpoint cannot be loaded: corrupt file, wrong architecture."""


class CacheError(HarnessError):
    """The cache cannot be used: unwritable directory, unreadable entry."""


class ModelOutputError(HarnessError):
    """A model's output breaks its contract (DESIGN §11): wrong type, box format, labels."""


class ModelInputError(HarnessError):
    """A model cannot take the data's images (DESIGN §11): e.g. a layer sized for another
    resolution fails on the first batch."""


class CheckError(HarnessError):
    """A check cannot run on this model or data (its corruptions need bigger images, its
    attack needs training losses). ``field`` is relative to the check (``corruptions``,
    ``metric``) until ``measure`` locates it under ``checks.<name>`` in the suite file."""
