"""The three profiles as records: what each one is, so no module branches on a profile's name.

``smoke`` is CI plumbing (every table, figure and page stamped), ``mini`` the offline CPU protocol on self-pretrained
mini ViTs, ``paper`` the exact protocol on a GPU with downloads. What a profile *runs* (backbones, datasets, seeds,
grids) is its protocol (``paper.protocols``); this record holds how it behaves everywhere else.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    """How one profile behaves outside its run grids."""

    name: str
    stamp: str | None  # the warning on every table, figure and notebook page (smoke: not results)
    source_dataset: str | None  # where its backbones are pretrained here (None: timm's ImageNet weights)
    on_gpu: bool  # its time estimates are GPU-hours (else CPU time)
    suite_command: str | None  # the one command that trains its missing runs (None: `sweep --grid ...`)
    documented: bool = False  # README and docs include its results

    @property
    def pretrains_backbones(self) -> bool:
        """Its backbones are pretrained here (the mini ViTs) rather than downloaded."""
        return self.source_dataset is not None


SMOKE_STAMP = "SMOKE — plumbing only, not results"
MINI_SOURCE = "fmnist_source"  # five Fashion-MNIST classes: ImageNet's role for the mini backbones

PROFILE_RECORDS: dict[str, Profile] = {
    "smoke": Profile("smoke", SMOKE_STAMP, MINI_SOURCE, on_gpu=False,
                     suite_command="python -m adaptertune.paper.suite --profile smoke"),
    "mini": Profile("mini", None, MINI_SOURCE, on_gpu=False, suite_command="make mini", documented=True),
    "paper": Profile("paper", None, None, on_gpu=True, suite_command=None),
}
PROFILES = tuple(PROFILE_RECORDS)


def profile_record(name: str) -> Profile:
    """The record of a profile; an unknown name is a ValueError listing the profiles."""
    if name not in PROFILE_RECORDS:
        raise ValueError(f"profile={name!r} is not allowed: choose one of {PROFILES}")
    return PROFILE_RECORDS[name]


__all__ = ["MINI_SOURCE", "PROFILES", "PROFILE_RECORDS", "SMOKE_STAMP", "Profile", "profile_record"]
