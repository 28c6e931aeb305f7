"""The profile names, in a module of their own so that the data registry and the run config can both use them
without importing each other. smoke: plumbing only (CI); mini: the offline CPU protocol; paper: the exact protocol
(GPU + downloads)."""
from __future__ import annotations

PROFILES = ("smoke", "mini", "paper")

__all__ = ["PROFILES"]
