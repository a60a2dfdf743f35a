"""Each run's epoch: the order of its rows and its augmentation, drawn up front on the device.

Every run draws from its own generator, seeded per (seed, epoch), so a run sees the same stream
alone, in any stack, and after a resume; nothing here synchronises with the host. Augmentation is
batched tensor ops on uint8 images (random crop with zero padding 4, horizontal flip, and an
optional rotation), applied to raw pixel values before normalisation as torchvision's pipeline does.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

AUGMENTATIONS = ("none", "crop-flip", "crop-flip-rotate")


def draw_augmentation(mode: str, n: int, gen: torch.Generator, device) -> dict[str, torch.Tensor] | None:
    """One epoch's augmentation for ``n`` images: crop offsets, flips (and rotation angles)."""
    if mode == "none":
        return None
    aug = {
        "oy": torch.randint(0, 9, (n,), device=device, generator=gen),
        "ox": torch.randint(0, 9, (n,), device=device, generator=gen),
        "flip": torch.rand(n, device=device, generator=gen) < 0.5,
    }
    if mode == "crop-flip-rotate":
        aug["angle"] = (torch.rand(n, device=device, generator=gen) * 2 - 1) * math.radians(20)
    return aug


def augment(xb: torch.Tensor, aug: dict[str, torch.Tensor] | None) -> torch.Tensor:
    """Random crop with zero padding 4, horizontal flip (and rotation) of NCHW images, as floats."""
    if aug is None:
        return xb.float()
    b, c, h, w = xb.shape
    out = _crop(F.pad(xb.float(), (4, 4, 4, 4)), aug["oy"].view(b, 1), aug["ox"].view(b, 1), h, w)
    out = torch.where(aug["flip"].view(b, 1, 1, 1), out.flip(3), out)
    if "angle" in aug:
        cos, sin, zero = aug["angle"].cos(), aug["angle"].sin(), torch.zeros_like(aug["angle"])
        theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
        grid = F.affine_grid(theta, list(out.shape), align_corners=False)
        out = F.grid_sample(out, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return out


def _crop(padded: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor, h: int, w: int) -> torch.Tensor:
    b, c = padded.shape[:2]
    rows = (oy + torch.arange(h, device=padded.device)).view(b, 1, h, 1).expand(b, c, h, padded.shape[3])
    out = padded.gather(2, rows)
    cols = (ox + torch.arange(w, device=padded.device)).view(b, 1, 1, w).expand(b, c, h, w)
    return out.gather(3, cols)


class EpochSampler:
    """The batches of R runs' epochs: each run's own order of rows and augmentation stream."""

    def __init__(self, seeds: list[int], batch_size: int, augmentation: str):
        self.seeds, self.batch_size, self.augmentation = [int(s) for s in seeds], batch_size, augmentation

    def _order(self, epoch: int, n_rows: int, rows, device) -> tuple[torch.Tensor, dict | None]:
        """Each run's order of rows and augmentation for ``epoch``: ``(R, L)`` and ``{key: (R, L)}``."""
        length = n_rows if rows is None else min(len(r) for r in rows)
        orders, augs = [], []
        for r, seed in enumerate(self.seeds):
            gen = torch.Generator(device=device)
            gen.manual_seed(seed * 1_000_003 + epoch)
            if rows is None:
                order = torch.randperm(n_rows, device=device, generator=gen)
            else:  # equally many rows per run: a longer row list skips a different few each epoch
                own = torch.as_tensor(rows[r], device=device)
                order = own[torch.randperm(len(own), device=device, generator=gen)[:length]]
            orders.append(order)
            augs.append(draw_augmentation(self.augmentation, length, gen, device))
        aug = None if augs[0] is None else {k: torch.stack([a[k] for a in augs]) for k in augs[0]}
        return torch.stack(orders), aug

    def parts(self, length: int) -> list[slice]:
        """An epoch's batches of ``length`` rows; a last batch of one row joins the one before, since
        batch normalisation cannot train on a single row (how many rows a pruning method keeps is
        not ours to choose)."""
        ends = [*range(self.batch_size, length, self.batch_size), length] if length else []
        if len(ends) > 1 and ends[-1] - ends[-2] == 1:
            del ends[-2]
        return [slice(start, end) for start, end in zip([0, *ends[:-1]], ends)]

    def batches(self, epoch: int, data, labels=None, weights=None, rows=None, rank: int = 0, world: int = 1):
        """Yield ``(index, inputs, labels, weights)`` batches of ``data``, each with a leading run axis.

        ``labels`` / ``weights`` are ``(R, N)`` (default: ``data``'s, for every run); ``rows`` gives
        each run its training rows (default: all); under ``world`` ranks each takes its share of
        every global batch.
        """
        runs = len(self.seeds)
        labels = data.y.expand(runs, -1) if labels is None else labels
        if weights is None and data.w is not None:
            weights = data.w.expand(runs, -1)
        order, aug = self._order(epoch, len(data), rows, data.y.device)
        for part in self.parts(order.shape[1]):
            idx = order[:, part]
            a = None if aug is None else {k: v[:, part] for k, v in aug.items()}
            if world > 1:
                idx = idx[:, rank::world]
                a = None if a is None else {k: v[:, rank::world] for k, v in a.items()}
            xb = data.x[idx]
            if data.images:
                flat_aug = None if a is None else {k: v.reshape(-1) for k, v in a.items()}
                xb = data.prepare(augment(xb.flatten(0, 1), flat_aug)).view(*idx.shape, *xb.shape[2:])
            yield idx, xb, labels.gather(1, idx), None if weights is None else weights.gather(1, idx)
