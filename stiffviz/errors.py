"""The one exception type for bad input, so callers (CLI, UI) can show it as is."""

from __future__ import annotations


class ParameterError(ValueError):
    """A user-supplied value is out of range; the message names the parameter and its limit.

    ``parameter`` holds the parameter's name so a UI can point at the right control.
    """

    def __init__(self, parameter: str, message: str):
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter


def check_finite(parameter: str, value: float) -> float:
    """Return ``float(value)`` or raise :class:`ParameterError` if it is NaN or infinite."""
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ParameterError(parameter, f"must be a finite number, got {value}")
    return value
