"""Backbones: the paper's timm ViTs with pinned pretrained tags, any timm ViT, local weight files, and
the small self-pretrained ``mini`` ViTs of the offline protocol.

Pretrained weights that cannot be loaded are an error, never a silent fallback to random weights (the
authors' code falls back with a printed warning, which makes meaningless results look plausible).
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import timm
import torch
from safetensors.torch import load_file
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from .paths import backbones_dir

# Explicit tags = the ones the authors' code ends up with (PAPER.md), so results stay comparable.
PAPER_BACKBONES: dict[str, str] = {
    "vit_small_patch16_224": "vit_small_patch16_224.augreg_in1k",
    "vit_base_patch16_224": "vit_base_patch16_224.augreg2_in21k_ft_in1k",
    "deit_tiny_patch16_224": "deit_tiny_patch16_224.fb_in1k",
}
ALIASES: dict[str, str] = {"vit-s16": "vit_small_patch16_224", "vit-b16": "vit_base_patch16_224", "deit-t16": "deit_tiny_patch16_224"}
INFO_ATTR = "adaptertune_backbone"
FMNIST_MEAN, FMNIST_STD = (0.2860,), (0.3530,)


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights were requested and could not be loaded."""


@dataclass(frozen=True)
class MiniSpec:
    """A small timm ``VisionTransformer`` for 28×28 grayscale images, pretrained by this project."""

    name: str
    embed_dim: int
    depth: int
    num_heads: int
    patch_size: int = 7
    img_size: int = 28
    in_chans: int = 1
    mlp_ratio: float = 4.0

    def build(self, num_classes: int) -> VisionTransformer:
        model = VisionTransformer(
            img_size=self.img_size, patch_size=self.patch_size, in_chans=self.in_chans, num_classes=num_classes,
            embed_dim=self.embed_dim, depth=self.depth, num_heads=self.num_heads, mlp_ratio=self.mlp_ratio,
        )
        model.pretrained_cfg = {
            "architecture": self.name, "tag": "", "input_size": (self.in_chans, self.img_size, self.img_size),
            "mean": FMNIST_MEAN, "std": FMNIST_STD, "crop_pct": 1.0, "interpolation": "bilinear",
            "num_classes": num_classes, "classifier": "head",
        }
        return model


# Two widths (the DeiT-T / ViT-S analogues) sized so the whole mini protocol fits ~45 min on 2 CPU cores:
# measured full-FT training throughput at batch 128 is ~1,800 img/s (mini-s) and ~830 img/s (mini-b).
MINI_BACKBONES: dict[str, MiniSpec] = {
    "mini-s": MiniSpec("mini-s", embed_dim=64, depth=6, num_heads=2),
    "mini-b": MiniSpec("mini-b", embed_dim=128, depth=6, num_heads=4),
}


# "<mini>.e<k>": the snapshot after epoch k of <mini>'s pretraining run; "<mini>.p<s>": <mini>'s recipe pretrained
# with seed s. Both are weights of the same architecture, produced by `pretrain-mini` (dose-response and
# pretraining-seed controls of the mini protocol).
MINI_VARIANT = re.compile(r"^(?P<base>[a-z0-9-]+)\.(?P<kind>[ep])(?P<number>[0-9]+)$")


def mini_spec(name: str) -> MiniSpec | None:
    """The architecture of a mini backbone or one of its variants (``mini-s.e2``, ``mini-s.p1``); None otherwise."""
    if name in MINI_BACKBONES:
        return MINI_BACKBONES[name]
    match = MINI_VARIANT.match(name)
    return MINI_BACKBONES.get(match["base"]) if match else None


def mini_variant(name: str) -> tuple[str, str | None, int | None]:
    """``(base, kind, number)``: ``("mini-s", "e", 2)`` for ``mini-s.e2``, ``("mini-s", None, None)`` for ``mini-s``."""
    if name in MINI_BACKBONES:
        return name, None, None
    match = MINI_VARIANT.match(name)
    if not match or match["base"] not in MINI_BACKBONES:
        raise ValueError(f"backbone {name!r} is not a mini backbone: use one of {sorted(MINI_BACKBONES)}, optionally "
                         "with '.e<epoch>' (a pretraining snapshot) or '.p<seed>' (another pretraining seed)")
    return match["base"], match["kind"], int(match["number"])


def replicate_of(name: str) -> tuple[str, int]:
    """``(family, replicate)``: ``mini-s.p2`` is replicate 2 of the family ``mini-s``; every other backbone (a paper
    ViT, a snapshot ``mini-s.e2``, ``mini-s`` itself) is replicate 0 of its own name. Tables group the main
    comparison by family, so n counts pretraining runs."""
    if mini_spec(name) is None or name in MINI_BACKBONES:
        return name, 0
    base, kind, number = mini_variant(name)
    return (base, number) if kind == "p" else (name, 0)


def replicate_name(family: str, replicate: int) -> str:
    """The backbone of replicate ``replicate`` of ``family`` (0 is the family's own backbone)."""
    if replicate == 0:
        return family
    if family not in MINI_BACKBONES:
        raise ValueError(f"backbone {family!r} has no pretraining replicates: only {sorted(MINI_BACKBONES)} do "
                         "(the project pretrains them; paper backbones are one hub checkpoint each)")
    return f"{family}.p{replicate}"


def mini_weights_dir(profile: str = "mini") -> Path:
    """Each profile caches its own mini backbones, so a smoke run never overwrites the real ones."""
    return backbones_dir() / profile


def mini_weights_path(name: str, profile: str = "mini") -> Path:
    return mini_weights_dir(profile) / f"{name}.safetensors"


def resolve_name(name: str) -> str:
    """Alias -> timm name; a paper name without tag -> its pinned tag; anything else unchanged."""
    name = ALIASES.get(name, name)
    return PAPER_BACKBONES.get(name, name)


def _how_to_get(full_name: str) -> str:
    return (
        f"To use {full_name!r}: (1) on a machine with internet run once "
        f"`python -c \"import timm; timm.create_model('{full_name}', pretrained=True)\"` to fill the Hugging Face "
        "cache (~/.cache/huggingface; copy it over for offline machines, and set HF_HUB_OFFLINE=1); or (2) pass "
        "checkpoint='path/to/weights.safetensors'; or (3) work offline with the self-pretrained mini backbones "
        f"({', '.join(MINI_BACKBONES)}; `python -m adaptertune pretrain-mini`). pretrained=False gives random weights "
        "on purpose."
    )


def _create_mini(name: str, spec: MiniSpec, num_classes: int, pretrained: bool, checkpoint: str | Path | None,
                 profile: str) -> nn.Module:
    model = spec.build(num_classes)
    info = {"name": name, "architecture": spec.name, "tag": "", "pretrained": pretrained, "source": "random"}
    if pretrained or checkpoint is not None:
        path = Path(checkpoint) if checkpoint is not None else mini_weights_path(name, profile)
        if not path.is_file():
            raise PretrainedWeightsError(
                f"no pretrained weights for mini backbone {name!r} at {path}. Build them offline with "
                f"`python -m adaptertune pretrain-mini --profile {profile} --names {name}` (cached under "
                f"{mini_weights_dir(profile)}), or pass pretrained=False for random weights on purpose."
            )
        state = load_file(str(path))
        head = {k for k in model.state_dict() if k.startswith("head.")}
        missing, unexpected = model.load_state_dict({k: v for k, v in state.items() if k not in head}, strict=False)
        if set(missing) != head or unexpected:
            raise PretrainedWeightsError(f"{path} does not fit {spec.name}: missing {sorted(set(missing) - head)}, unexpected {unexpected}")
        meta_path = path.with_suffix(".json")
        provenance = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        info.update(pretrained=True, source=f"file:{path}", tag=provenance.get("tag", ""), provenance=provenance)
    setattr(model, INFO_ATTR, info)
    return model


def create_backbone(
    name: str,
    num_classes: int,
    *,
    pretrained: bool = True,
    checkpoint: str | Path | None = None,
    profile: str = "mini",
    **timm_kwargs,
) -> nn.Module:
    """A classifier backbone with a fresh ``num_classes`` head; where its weights came from is recorded.

    ``name``: a paper name (tag pinned), an alias (vit-s16, vit-b16, deit-t16), any timm ViT name (with or
    without ``.tag``) or a mini backbone. ``checkpoint``: a local weights file (safetensors preferred; torch
    files are read with ``weights_only=True``) that replaces the hub download.
    """
    if not isinstance(num_classes, int) or num_classes <= 0:
        raise ValueError(f"num_classes={num_classes!r} is not allowed: use a positive integer")
    if mini_spec(name) is not None:
        return _create_mini(name, mini_spec(name), num_classes, pretrained, checkpoint, profile)
    full = resolve_name(name)
    arch = full.split(".")[0]
    if arch not in timm.list_models():
        raise ValueError(f"backbone {name!r} is unknown: use one of {sorted(PAPER_BACKBONES) + sorted(MINI_BACKBONES)}, "
                         f"an alias {sorted(ALIASES)}, or a timm model name (timm.list_models('vit_*'))")
    info = {"name": name, "architecture": arch, "tag": full.split(".", 1)[1] if "." in full else "", "pretrained": False, "source": "random"}
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise PretrainedWeightsError(f"checkpoint file {path} does not exist. {_how_to_get(full)}")
        try:
            model = timm.create_model(full, pretrained=True, num_classes=num_classes,
                                      pretrained_cfg_overlay={"file": str(path)}, **timm_kwargs)
        except Exception as err:  # a corrupt file or one for another architecture
            raise PretrainedWeightsError(f"could not load {path} into {full}: {err}") from err
        info.update(pretrained=True, source=f"file:{path}")
    elif pretrained:
        cfg = timm.models.get_pretrained_cfg(full)
        if cfg is None or not any(getattr(cfg, k, None) for k in ("hf_hub_id", "url", "file")):
            raise PretrainedWeightsError(f"timm has no pretrained weights for {full!r}. {_how_to_get(full)}")
        try:
            model = timm.create_model(full, pretrained=True, num_classes=num_classes, **timm_kwargs)
        except Exception as err:  # offline, missing cache, network failure
            raise PretrainedWeightsError(f"could not load pretrained weights for {full!r} ({type(err).__name__}: {err}). {_how_to_get(full)}") from err
        source = cfg.hf_hub_id or cfg.url or cfg.file
        info.update(pretrained=True, source=f"timm:{source}", tag=getattr(cfg, "tag", "") or info["tag"])
    else:
        model = timm.create_model(full, pretrained=False, num_classes=num_classes, **timm_kwargs)
    setattr(model, INFO_ATTR, info)
    return model


@lru_cache(maxsize=None)
def backbone_shape(name: str) -> tuple[int, int]:
    """``(depth, embed_dim)`` of a backbone without loading weights: the mini spec, or a timm model on 'meta'."""
    if mini_spec(name) is not None:
        spec = mini_spec(name)
        return spec.depth, spec.embed_dim
    with torch.device("meta"):
        model = timm.create_model(resolve_name(name).split(".")[0], pretrained=False, num_classes=1)
    return len(model.blocks), int(model.embed_dim)


def backbone_info(model: nn.Module) -> dict:
    """Where the backbone came from (name, architecture, pretrained tag, source); recorded in every result."""
    info = getattr(model, INFO_ATTR, None)
    if info is None:
        cfg = getattr(model, "pretrained_cfg", {}) or {}
        info = {"name": type(model).__name__, "architecture": cfg.get("architecture", ""), "tag": cfg.get("tag", ""),
                "pretrained": None, "source": "unknown"}
    return dict(info)


def data_config(model: nn.Module) -> dict:
    """timm's resolved input config (size, mean/std, crop_pct, interpolation) of the checkpoint itself.

    Uses each checkpoint's own normalisation (AugReg ViTs: mean = std = 0.5), unlike the authors' code,
    which applies ImageNet mean/std to all three backbones (PAPER.md).
    """
    cfg = timm.data.resolve_data_config({}, model=model)
    return {k: (tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in cfg.items()}


def spec_dict(name: str) -> dict:
    return asdict(mini_spec(name))
