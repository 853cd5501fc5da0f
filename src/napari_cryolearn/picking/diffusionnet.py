"""DiffusionNet on membrane meshes: each vertex's predicted distance to the nearest protein.

The network of MemBrain-pick (after Sharp et al., *DiffusionNet: discretization agnostic learning
on surfaces*, 2022), written anew:

1. a front end over each vertex's normal profile (the tomogram sampled along the normal):
   two blocks of ``Conv1d(k=3) → ReLU → MaxPool1d(2)`` along the profile, then a Linear layer
   to ``c_width`` features per vertex;
2. ``n_blocks`` :class:`DiffusionNetBlock`: learned heat diffusion in the spectral basis
   (:class:`LearnedTimeDiffusion`), spatial gradient features (:class:`SpatialGradientFeatures`)
   and a per-vertex MLP on ``[x, diffused, gradient features]`` with a residual;
3. a Linear layer to one number per vertex. The output is **plain** (no activation) by default,
   as DiffusionNet's last layer; ``positive=True`` puts a softplus on it so that it is ≥ 0.

The operators (mass, Laplacian eigenpairs, gradient matrices) come from
:mod:`napari_cryolearn.picking.operators`; :func:`operators_to_torch` turns them into tensors.
The loss is MemBrain-pick's :func:`weighted_mse`. Nothing here reads or writes files.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from napari_cryolearn.engine.errors import InputError

__all__ = [
    "LearnedTimeDiffusion",
    "SpatialGradientFeatures",
    "DiffusionNetBlock",
    "DiffusionNetPicker",
    "operators_to_torch",
    "weighted_mse",
]


def _apply(op: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``op @ x`` for a dense, sparse COO or sparse CSR ``op``."""
    if op.layout == torch.strided:
        return op @ x
    return torch.sparse.mm(op, x)


class LearnedTimeDiffusion(nn.Module):
    """Heat diffusion of every channel for its own learned time ``t ≥ 0``, in the spectral basis.

    ``x → evecs · (exp(−λ t) ⊙ (evecsᵀ (mass ⊙ x)))``, with ``evecs`` M-orthonormal
    (``evecsᵀ diag(mass) evecs = I``). With ``t = 0`` it projects onto the span of the
    eigenvectors (the identity on functions in it); as ``t`` grows it tends to the
    mass-weighted mean of each channel. Times start at ``init_time`` and are kept ≥ 0 (clamped
    in place before each forward pass, as DiffusionNet does).

    Examples
    --------
    >>> d = LearnedTimeDiffusion(2)
    >>> evecs = torch.ones(4, 1) / 2.0  # the constant, M-orthonormal for unit masses
    >>> x = torch.tensor([[1.0, 0], [2, 0], [3, 0], [6, 4]])
    >>> d(x, torch.ones(4), torch.zeros(1), evecs).tolist()[0]
    [3.0, 1.0]
    """

    def __init__(self, channels: int, *, init_time: float = 0.0):
        super().__init__()
        self.channels = int(channels)
        self.diffusion_time = nn.Parameter(torch.full((self.channels,), float(init_time)))

    def forward(self, x: torch.Tensor, mass: torch.Tensor, evals: torch.Tensor, evecs: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.channels:
            raise InputError(f"expected {self.channels} channels, got {x.shape[-1]}", field="x")
        with torch.no_grad():
            self.diffusion_time.data.clamp_(min=0.0)
        coefs = evecs.transpose(0, 1) @ (mass[:, None] * x)  # (k, C)
        decay = torch.exp(-evals[:, None] * self.diffusion_time[None, :])  # (k, C)
        return evecs @ (decay * coefs)


class SpatialGradientFeatures(nn.Module):
    """Per-channel features from the tangent gradients ``gx, gy`` (each ``(N, C)``).

    The gradient ``g = gx + i·gy`` of every channel is combined with a learned complex-linear
    map of all channels' gradients, ``b = (A_re + i·A_im) g`` (a rotation and scaling in each
    tangent plane, mixing channels), and the feature is ``tanh(Re(conj(g) · b)) =
    tanh(gx·b_re + gy·b_im)``: a rotation-invariant dot product of the gradient with its learned
    transform. ``with_rotations=False`` drops ``A_im`` (a plain dot product).

    Examples
    --------
    >>> torch.manual_seed(0) is not None
    True
    >>> f = SpatialGradientFeatures(3)
    >>> f(torch.zeros(5, 3), torch.zeros(5, 3)).shape
    torch.Size([5, 3])
    """

    def __init__(self, channels: int, *, with_rotations: bool = True):
        super().__init__()
        self.channels = int(channels)
        self.a_re = nn.Linear(self.channels, self.channels, bias=False)
        self.a_im = nn.Linear(self.channels, self.channels, bias=False) if with_rotations else None

    def forward(self, gx: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
        b_re = self.a_re(gx)
        b_im = self.a_re(gy)
        if self.a_im is not None:
            b_re = b_re - self.a_im(gy)
            b_im = b_im + self.a_im(gx)
        return torch.tanh(gx * b_re + gy * b_im)


class DiffusionNetBlock(nn.Module):
    """Diffusion → gradient features → per-vertex MLP on ``[x, diffused, features]``, plus ``x``.

    The MLP is ``Linear(3C, C) → ReLU → Dropout → Linear(C, C) → ReLU → Dropout → Linear(C, C)``
    (hidden widths ``mlp_hidden``, default ``(C, C)``).

    Examples
    --------
    >>> b = DiffusionNetBlock(4)
    >>> n = 6
    >>> evecs = torch.ones(n, 1) / n ** 0.5
    >>> z = torch.zeros(n, n)
    >>> b(torch.randn(n, 4), torch.ones(n), torch.zeros(1), evecs, z, z).shape
    torch.Size([6, 4])
    """

    def __init__(self, channels: int, *, mlp_hidden: tuple[int, ...] | None = None, dropout: float = 0.0,
                 with_rotations: bool = True):
        super().__init__()
        c = int(channels)
        self.channels = c
        self.diffusion = LearnedTimeDiffusion(c)
        self.gradient_features = SpatialGradientFeatures(c, with_rotations=with_rotations)
        widths = [3 * c, *(mlp_hidden if mlp_hidden is not None else (c, c)), c]
        layers: list[nn.Module] = []
        for i in range(len(widths) - 1):
            layers.append(nn.Linear(widths[i], widths[i + 1]))
            if i < len(widths) - 2:
                layers.append(nn.ReLU())
                if dropout > 0:
                    layers.append(nn.Dropout(dropout))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x, mass, evals, evecs, grad_x, grad_y) -> torch.Tensor:
        diffused = self.diffusion(x, mass, evals, evecs)
        gx = _apply(grad_x, diffused)
        gy = _apply(grad_y, diffused)
        feats = self.gradient_features(gx, gy)
        return x + self.mlp(torch.cat([x, diffused, feats], dim=-1))


class DiffusionNetPicker(nn.Module):
    """MemBrain-pick's network: normal profiles of the vertices → predicted distance per vertex.

    Parameters
    ----------
    profile_length : int
        Samples per profile ``P`` (MemBrain-pick: 16 of its 20, a window), at least 4.
    conv_width : int
        Channels of the two convolution blocks along the profile.
    c_width : int
        Features per vertex in the DiffusionNet blocks.
    n_blocks : int
        DiffusionNet blocks.
    dropout : float
        Dropout in the blocks' MLPs.
    positive : bool
        Softplus on the output (≥ 0); by default the output is plain.

    Examples
    --------
    >>> torch.manual_seed(0) is not None
    True
    >>> net = DiffusionNetPicker(profile_length=16, c_width=8, n_blocks=2)
    >>> n, k = 10, 3
    >>> evecs = torch.linalg.qr(torch.randn(n, k))[0]
    >>> z = torch.zeros(n, n).to_sparse()
    >>> net(torch.randn(n, 16), torch.ones(n), torch.arange(k, dtype=torch.float32), evecs, z, z).shape
    torch.Size([10])
    """

    def __init__(self, *, profile_length: int = 16, conv_width: int = 16, c_width: int = 16, n_blocks: int = 4,
                 dropout: float = 0.0, positive: bool = False):
        super().__init__()
        if int(profile_length) < 4:
            raise InputError(f"must be at least 4, got {profile_length!r}", field="profile_length")
        for name, v in (("conv_width", conv_width), ("c_width", c_width)):
            if int(v) < 1:
                raise InputError(f"must be at least 1, got {v!r}", field=name)
        if int(n_blocks) < 0:
            raise InputError(f"must be at least 0, got {n_blocks!r}", field="n_blocks")
        self.profile_length = int(profile_length)
        self.positive = bool(positive)
        cw = int(conv_width)
        self.profile_encoder = nn.Sequential(
            nn.Conv1d(1, cw, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(cw, cw, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool1d(2),
        )
        self.first = nn.Linear(cw * (self.profile_length // 4), int(c_width))
        self.blocks = nn.ModuleList(
            DiffusionNetBlock(int(c_width), dropout=float(dropout)) for _ in range(int(n_blocks))
        )
        self.last = nn.Linear(int(c_width), 1)

    def forward(self, profiles, mass, evals, evecs, grad_x, grad_y) -> torch.Tensor:
        if profiles.ndim != 2 or profiles.shape[1] != self.profile_length:
            raise InputError(f"expected (N, {self.profile_length}), got {tuple(profiles.shape)}", field="profiles")
        n = profiles.shape[0]
        if mass.shape != (n,) or evecs.shape[0] != n or evecs.shape[1] != evals.shape[0]:
            raise InputError(
                f"operators do not fit {n} vertices: mass {tuple(mass.shape)}, evals {tuple(evals.shape)}, "
                f"evecs {tuple(evecs.shape)}", field="operators")
        h = self.profile_encoder(profiles[:, None, :]).flatten(1)
        x = self.first(h)
        for block in self.blocks:
            x = block(x, mass, evals, evecs, grad_x, grad_y)
        out = self.last(x)[:, 0]
        return nn.functional.softplus(out) if self.positive else out


def _sparse_to_torch(a, dtype, device) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.to(device=device, dtype=dtype)
    if hasattr(a, "tocoo"):
        coo = a.tocoo()
        idx = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
        vals = torch.from_numpy(np.asarray(coo.data)).to(dtype)
        return torch.sparse_coo_tensor(idx, vals, size=coo.shape, device=device, check_invariants=False).coalesce()
    return torch.as_tensor(np.asarray(a), dtype=dtype, device=device)


def operators_to_torch(mass: Any, evals=None, evecs=None, grad_x=None, grad_y=None, *,
                       dtype: torch.dtype = torch.float32, device=None) -> tuple[torch.Tensor, ...]:
    """``(mass, evals, evecs, grad_x, grad_y)`` as torch tensors, the gradients sparse COO.

    Pass the five arrays (numpy, scipy.sparse or torch), or one object with those attributes
    (a :class:`napari_cryolearn.picking.operators.MeshOperators`). Dense gradient arrays stay
    dense.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> m, l, v, gx, gy = operators_to_torch(np.ones(3), np.zeros(1), np.ones((3, 1)), sp.eye(3, format="csr"),
    ...                                      sp.csr_matrix((3, 3)))
    >>> m.dtype, gx.layout, tuple(gy.shape)
    (torch.float32, torch.sparse_coo, (3, 3))
    """
    if evals is None and evecs is None and grad_x is None and grad_y is None:
        ops = mass
        try:
            mass, evals, evecs, grad_x, grad_y = (ops.mass, ops.evals, ops.evecs, ops.grad_x, ops.grad_y)
        except AttributeError as err:
            raise InputError(f"expected mass, evals, evecs, grad_x and grad_y ({err})", field="operators") from None
    if any(a is None for a in (evals, evecs, grad_x, grad_y)):
        raise InputError("give all of mass, evals, evecs, grad_x, grad_y, or one object with them",
                         field="operators")
    m = torch.as_tensor(np.asarray(mass).reshape(-1) if not isinstance(mass, torch.Tensor) else mass.reshape(-1),
                        dtype=dtype, device=device)
    lam = torch.as_tensor(np.asarray(evals) if not isinstance(evals, torch.Tensor) else evals,
                          dtype=dtype, device=device)
    vec = torch.as_tensor(np.asarray(evecs) if not isinstance(evecs, torch.Tensor) else evecs,
                          dtype=dtype, device=device)
    n = m.shape[0]
    if vec.ndim != 2 or vec.shape[0] != n or vec.shape[1] != lam.shape[0]:
        raise InputError(f"evecs {tuple(vec.shape)} do not fit mass ({n},) and evals {tuple(lam.shape)}",
                         field="operators")
    gx = _sparse_to_torch(grad_x, dtype, device)
    gy = _sparse_to_torch(grad_y, dtype, device)
    for name, g in (("grad_x", gx), ("grad_y", gy)):
        if tuple(g.shape) != (n, n):
            raise InputError(f"expected ({n}, {n}), got {tuple(g.shape)}", field=name)
    return m, lam, vec, gx, gy


def weighted_mse(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """MemBrain-pick's loss ``Σ (w · (pred − target))² / Σ w`` (the weight inside the square).

    Examples
    --------
    >>> weighted_mse(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.5])).item()
    1.3333333730697632
    """
    w = weights.to(pred.dtype)
    return ((w * (pred - target)) ** 2).sum() / w.sum()
