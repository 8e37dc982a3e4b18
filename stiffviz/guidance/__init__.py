"""Guidance methods that act on the solver's trajectory: ERK-Guid (and, later, SteinDiff)."""

from .erk import ErkGuid

__all__ = ["ErkGuid"]
