"""SciPy sparse inputs (TF-IDF, one-hot counts) kept sparse in host memory; a batch is densified on the device.

A dense copy of a large vocabulary's features need not fit anywhere: only the rows that a batch or an
evaluation chunk takes become a dense float32 tensor. Taking rows reads their indices on the host, so
a sparse epoch waits on the device once a batch (dense data never does).
"""

from __future__ import annotations

import numpy as np
import torch


class SparseRows:
    """The rows of a sparse matrix, indexed like a tensor of shape ``(N, D)``; ``shift``/``scale``
    (``(D,)`` arrays) standardise each dense batch, as the dense rows would have been."""

    ndim = 2

    def __init__(self, matrix, device="cpu", shift=None, scale=None):
        self.matrix = matrix.tocsr().astype(np.float32)
        self.device = torch.device(device)
        self.shape = tuple(self.matrix.shape)
        self.shift, self.scale = shift, scale

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> torch.Tensor:
        """The rows ``index`` (a slice, or indices of any shape) as a dense ``(*index.shape, D)`` tensor."""
        if isinstance(index, slice):
            shape, rows = None, self.matrix[index]
        else:
            index = torch.as_tensor(index)
            shape, rows = tuple(index.shape), self.matrix[index.reshape(-1).cpu().numpy()]
        dense = rows.toarray()
        if self.shift is not None:
            dense = (dense - self.shift) / self.scale
        out = torch.from_numpy(dense).to(self.device)
        return out if shape is None else out.view(*shape, self.shape[1])

    def rows(self, index) -> SparseRows:
        """The rows ``index``, still sparse."""
        index = torch.as_tensor(index).cpu().numpy()
        return SparseRows(self.matrix[index], self.device, self.shift, self.scale)

    def to(self, device) -> SparseRows:
        return SparseRows(self.matrix, device, self.shift, self.scale)


def column_stats(matrix) -> tuple[np.ndarray, np.ndarray]:
    """Each column's float32 mean and standard deviation (1 where the column is constant), without
    densifying the matrix."""
    mean = np.asarray(matrix.mean(0, dtype=np.float64)).ravel()
    square = np.asarray(matrix.multiply(matrix).mean(0, dtype=np.float64)).ravel()
    std = np.sqrt(np.maximum(square - mean**2, 0))
    return mean.astype(np.float32), np.where(std > 0, std, 1).astype(np.float32)
