"""Seeded perturbations for zeroth-order optimisation (MeZO, Malladi et al., NeurIPS 2023).

A direction ``z ~ N(0, I)`` over a list of parameters is never stored: parameter ``i`` draws its
part from a generator seeded by ``(seed, i)``, in fixed chunks, so the same ``z`` is regenerated
whenever it is needed, on any process and in any order of parameters.

Evaluating the loss at ``theta + mu z`` by adding ``mu z`` in place and later subtracting it does
not give ``theta`` back in float32 (about half the entries of a float32 tensor differ in their
last bits after ``+mu z, -2 mu z, +mu z``), so :func:`perturbed` perturbs each parameter only
while the module that owns it runs and copies the original back right after: one module's
parameters are copied at a time (of an embedding table, only the rows the batch looks up; the
output layer is not copied at all: it adds ``mu x z^T`` to its output ``x W^T``), and ``theta`` is
restored bit for bit. The update
``theta <- theta - lr g z`` (:func:`add_direction_`) is in place.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from lit_airlora.channel.seeding import derive_seed, make_generator

#: Values drawn per ``randn`` call: bounds the scratch memory of a perturbation (4 MB in float32).
CHUNK = 1 << 20


def direction_seed(round_seed: int, index: int) -> int:
    """Seed of the ``index``-th direction of a round (shared by every client and DDP rank)."""
    return derive_seed(round_seed, 0x5A, index)


@torch.no_grad()
def add_gaussian_(param: Tensor, seed: int, scale: float) -> None:
    """``param += scale * z`` in place, with ``z ~ N(0, I)`` regenerated from ``seed``.

    Args:
        param: Any contiguous floating tensor (a parameter), modified in place.
        seed: Seed of this parameter's part of the direction.
        scale: Multiplier of ``z`` (``mu``, ``-mu`` or ``-lr * g``).
    """
    generator = make_generator(seed, device=param.device)
    flat = param.data.view(-1)  # (numel,)
    for start in range(0, flat.numel(), CHUNK):
        chunk = flat[start : start + CHUNK]
        noise = torch.randn(
            chunk.shape, generator=generator, dtype=chunk.dtype, device=chunk.device
        )
        chunk.add_(noise, alpha=scale)


@torch.no_grad()
def add_gaussian_rows_(param: Tensor, seed: int, scale: float, rows: Tensor) -> None:
    """``param[rows] += scale * z[rows]`` in place: :func:`add_gaussian_` on some rows only.

    ``z`` is drawn chunk by chunk exactly as :func:`add_gaussian_` draws it (the generator must
    run through every chunk), but only the entries of ``rows`` are written.

    Args:
        param: A contiguous 2-D floating tensor (an embedding table), modified in place.
        seed: Seed of this parameter's part of the direction.
        scale: Multiplier of ``z``.
        rows: Sorted, unique row indices, ``[num_rows]``, int64.
    """
    generator = make_generator(seed, device=param.device)
    flat = param.data.view(-1)  # (numel,)
    width = param.shape[1]
    columns = torch.arange(width, device=rows.device)
    index = (rows[:, None] * width + columns).view(-1)  # sorted flat positions of the rows
    for start in range(0, flat.numel(), CHUNK):
        end = min(start + CHUNK, flat.numel())
        noise = torch.randn(end - start, generator=generator, dtype=flat.dtype, device=flat.device)
        bounds = torch.tensor([start, end], device=index.device)
        low, high = torch.searchsorted(index, bounds).tolist()
        if high > low:
            picked = index[low:high]
            flat[picked] = flat[picked].add(noise[picked - start], alpha=scale)


@torch.no_grad()
def add_gaussian_product_(out: Tensor, inputs: Tensor, shape: torch.Size, seed: int, scale: float):
    """``out += scale * inputs @ z.T`` for the ``[rows, width]`` matrix ``z`` that
    :func:`add_gaussian_` draws from ``seed`` for a parameter of ``shape``: a linear layer's
    output at ``W + scale z`` without writing ``W`` (bias-free layers).

    ``z`` is drawn chunk by chunk exactly as :func:`add_gaussian_` draws it; a chunk covers rows
    ``first..last`` (the first and last possibly in part, the rest zero), so each output column
    gets its dot product in at most two pieces.

    Args:
        out: ``[..., rows]``, the layer's output ``inputs @ W.T``, modified in place.
        inputs: ``[..., width]``, the layer's input.
        shape: ``(rows, width)``, the weight's shape (``z`` has its dtype: ``inputs``').
        seed: Seed of this parameter's part of the direction.
        scale: Multiplier of ``z``.
    """
    rows, width = shape
    generator = make_generator(seed, device=inputs.device)
    for start in range(0, rows * width, CHUNK):
        end = min(start + CHUNK, rows * width)
        noise = torch.randn(
            end - start, generator=generator, dtype=inputs.dtype, device=inputs.device
        )
        first, last = start // width, (end - 1) // width + 1
        block = noise.new_zeros((last - first) * width)  # (rows in the chunk * width,)
        block[start - first * width : end - first * width] = noise
        out[..., first:last].add_(inputs @ block.view(last - first, width).T, alpha=scale)


def add_direction_(params: Sequence[Tensor], seed: int, scale: float) -> None:
    """``theta += scale * z`` over all ``params`` (parameter ``i`` uses ``(seed, i)``)."""
    for index, param in enumerate(params):
        add_gaussian_(param, derive_seed(seed, index), scale)


def direction(params: Sequence[Tensor], seed: int) -> list[Tensor]:
    """The direction ``z`` itself, as new tensors (for tests and small models only)."""
    out = [torch.zeros_like(p) for p in params]
    add_direction_(out, seed, 1.0)
    return out


@contextlib.contextmanager
def perturbed(model: nn.Module, params: Sequence[Tensor], seed: int, scale: float) -> Iterator:
    """Forward passes of ``model`` inside the block see ``theta + scale * z``; ``theta`` is never
    changed outside the module that is running.

    Each parameter is perturbed by a forward pre-hook of the module that owns it and restored
    from a copy by its forward hook (tied weights are perturbed by each owner with the same
    ``z``); the model's bias-free output layer (``get_output_embeddings()``) instead adds
    ``scale x z^T`` to its output, its weight untouched. A parameter whose owner never ran is
    reported, since its ``z`` would be missing.

    Args:
        model: The model whose forward passes are perturbed.
        params: The perturbed parameters (their order fixes the seeds, as in
            :func:`add_direction_`).
        seed: Seed of the direction.
        scale: ``mu`` (or ``-mu``).
    """
    seeds = {id(p): derive_seed(seed, i) for i, p in enumerate(params)}
    owners = _owners(model, seeds)
    output_layer = _output_layer(model)
    missing = set(seeds) - {id(p) for owned in owners.values() for p in owned}
    if missing:
        raise RuntimeError(f"{len(missing)} perturbed parameters are not owned by any module.")
    fired: set[int] = set()
    handles = []
    for module, owned in owners.items():
        handles += _hooks(module, owned, seeds, scale, fired, module is output_layer)
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
    if fired != set(seeds):
        raise RuntimeError(
            f"{len(set(seeds) - fired)} perturbed parameters were not used by a forward pass "
            "inside the block; zeroth-order estimates need every perturbed parameter to be used."
        )


def _owners(model: nn.Module, seeds: dict[int, int]) -> dict[nn.Module, list[Tensor]]:
    owners: dict[nn.Module, list[Tensor]] = {}
    for module in model.modules():
        owned = [p for p in module.parameters(recurse=False) if id(p) in seeds]
        if owned:
            owners[module] = owned
    return owners


def _output_layer(model: nn.Module) -> nn.Module | None:
    """The model's output layer (a Hugging Face model's ``get_output_embeddings()``), if any."""
    get = getattr(model, "get_output_embeddings", None)
    return get() if callable(get) else None


def _hooks(
    module: nn.Module, owned: list[Tensor], seeds: dict, scale: float, fired: set, output: bool
) -> list:
    if _is_plain_embedding(module, owned):
        return _embedding_hooks(module, seeds, scale, fired)
    if output and _is_weight_only_linear(module, owned):
        return _output_side_hooks(module, seeds, scale, fired)
    saved: list[Tensor] = []

    def perturb(_module, _inputs):
        saved[:] = [p.detach().clone() for p in owned]
        for p in owned:
            add_gaussian_(p, seeds[id(p)], scale)
            fired.add(id(p))

    def restore(_module, _inputs, _output):
        with torch.no_grad():
            for p, original in zip(owned, saved, strict=True):
                p.copy_(original)
        saved.clear()

    return [module.register_forward_pre_hook(perturb), module.register_forward_hook(restore)]


def _is_plain_embedding(module: nn.Module, owned: list[Tensor]) -> bool:
    # max_norm renormalises looked-up rows in place, so such a table takes the copying path.
    plain = type(module) is nn.Embedding and module.max_norm is None
    return plain and len(owned) == 1 and owned[0] is module.weight


def _is_weight_only_linear(module: nn.Module, owned: list[Tensor]) -> bool:
    plain = type(module) is nn.Linear and module.weight.dim() == 2
    return plain and len(owned) == 1 and owned[0] is module.weight and module.bias is None


def _output_side_hooks(module: nn.Linear, seeds: dict, scale: float, fired: set) -> list:
    """``x (W + s z).T = x W.T + s x z.T``: the output layer adds ``s x z.T`` to its output and
    never writes ``W``, so no copy of it is kept (SmolLM2's output matrix, tied to the 113 MiB
    embedding table); costs a second matrix product of the layer's size."""
    weight = module.weight

    def perturb_output(_module, args, kwargs, output):
        inputs = args[0] if args else kwargs["input"]
        add_gaussian_product_(
            output, inputs.to(weight.dtype), weight.shape, seeds[id(weight)], scale
        )
        fired.add(id(weight))
        return output

    return [module.register_forward_hook(perturb_output, with_kwargs=True)]


def _embedding_hooks(module: nn.Embedding, seeds: dict, scale: float, fired: set) -> list:
    """A lookup reads only the rows of its ids: perturb and keep a copy of those rows alone,
    not of the whole table (the 49,152 x 576 table of SmolLM2 is 113 MiB in float32)."""
    weight, saved = module.weight, {}

    def perturb(_module, args, kwargs):
        rows = torch.unique(args[0] if args else kwargs["input"])  # sorted
        saved["rows"], saved["values"] = rows, weight.detach()[rows].clone()
        add_gaussian_rows_(weight, seeds[id(weight)], scale, rows)
        fired.add(id(weight))

    def restore(_module, _inputs, _output):
        with torch.no_grad():
            weight[saved.pop("rows")] = saved.pop("values")

    return [
        module.register_forward_pre_hook(perturb, with_kwargs=True),
        module.register_forward_hook(restore),
    ]


def projected_gradient(loss_plus: Tensor, loss_minus: Tensor, mu: float) -> Tensor:
    """``[L(theta + mu z) - L(theta - mu z)] / (2 mu)``: the two-point estimate of ``z^T grad L``.

    Args:
        loss_plus: Scalar loss at ``theta + mu z``.
        loss_minus: Scalar loss at ``theta - mu z``.
        mu: Perturbation scale (> 0).
    """
    return (loss_plus.double() - loss_minus.double()) / (2.0 * mu)


def clip_scalars(scalars: Tensor, clip: float) -> Tensor:
    """Clip to ``[-clip, clip]`` (the sensitivity bound of the privacy analysis)."""
    return scalars.clamp(-clip, clip)
