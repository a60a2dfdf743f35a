"""One assembly of a run: what to train (a ``Job``) resolved into what the engine needs.

The runner, the estimator and the audit all build their runs here. A job names a dataset, a noise,
a loss, a method and a seed; the dataset's recipe (``registry.toml``) supplies the network, the loss
preset and the training settings, and its preset the method's parameters for the noise level;
explicit parameters override them all. ``prepare`` loads the data, draws the noisy labels and
returns a ``MethodContext`` that builds seeded networks, losses and configs.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import re
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from jal_plugins.specs import format_spec, parse_spec

CLEAN = ("none", "clean")


@dataclass
class Job:
    """One training run; ``config`` holds engine fields (epochs, lr, ...) on top of the recipe."""

    dataset: str = "digits"
    noise: str = "none"
    loss: str = "ce"
    seed: int = 0
    method: str = "erm"
    preset: str | None = None
    model: str | None = None
    config: dict = field(default_factory=dict)
    loss_params: dict = field(default_factory=dict)
    model_params: dict = field(default_factory=dict)
    dataset_params: dict = field(default_factory=dict)
    method_params: dict = field(default_factory=dict)
    device: str = "auto"
    selection: object = None  # a selection.Selection, parsed from loss parameters marked auto by ``validate``

    def canonical(self) -> Job:
        """The same job with names as registered (aliases, case, ``_``/``-``) and a canonical noise spec."""
        from jal_plugins.checks import integer
        from jal_plugins.plugins import canonical

        return replace(
            self,
            dataset=canonical("datasets", self.dataset),
            loss=canonical("losses", self.loss),
            method=canonical("methods", self.method),
            model=None if self.model in (None, "auto") else canonical("models", self.model),
            noise=canonical_noise(self.noise),
            seed=integer("seed", self.seed, low=0),
        )

    def resolved(self) -> Resolved:
        """The recipe of the dataset with the preset and this job's overrides applied."""
        return resolve(self)

    def settings(self) -> dict:
        """Every setting that changes the result, resolved: the identity of the run."""
        r = self.resolved()
        out = {
            "dataset": self.dataset, "dataset_params": self.dataset_params, "noise": self.noise, "seed": self.seed,
            "loss": self.loss, "loss_params": r.loss_params, "method": self.method,
            "method_params": r.method_params, "model": r.model, "model_params": r.model_params,
            "preset": r.preset, "config": asdict(r.config),
        }  # fmt: skip
        if self.selection is not None:
            out["selection"] = self.selection.settings()
        if self.dataset_params.get("corrections") is not None:  # the decisions, not only their file's name
            out["corrections"] = corrections_digest(self.dataset_params)
        return out

    def key(self) -> str:
        """A short hash of ``settings()``: equal for equal runs, different when any setting differs."""
        text = json.dumps(self.settings(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def label(self) -> str:
        return f"{self.dataset} {self.noise} {self.method} {self.loss} seed {self.seed}"

    def slug(self) -> str:
        """A folder name: readable, and unique through the key."""
        readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{self.dataset}-{self.noise}-{self.method}-{self.loss}-{self.seed}")
        return f"{readable[:80]}-{self.key()}"


def canonical_noise(spec: str) -> str:
    """``sym:0.40,exact=false`` -> ``symmetric:0.4,exact=false``; dataset label sets (CIFAR-N) pass as given.

    Equivalent specs give one string: ``symmetric``, ``symmetric:0.4`` and ``symmetric:0.4,exact=true``
    are all ``symmetric:0.4`` (the model's default rate filled in, its other defaults left out).
    """
    from jal_plugins.plugins import UnknownNameError, host

    name, params = parse_spec(spec)
    if name.lower() in CLEAN and not params:
        return "none"
    try:
        entry = host()["noise_models"].get(name)
    except UnknownNameError:
        return format_spec(name, params)  # a label set of the dataset (e.g. CIFAR-N's "worst"), checked once loaded
    return format_spec(entry.name, _without_defaults(entry.factory, params))


def _without_defaults(factory, params: dict) -> dict:
    """``params`` with the factory's default ``rate`` filled in and its other defaults left out.

    Leaving defaults out (rather than writing them all) keeps the specs already stored in run keys,
    such as ``symmetric:0.4``, as they were. A value only counts as the default when its type matches
    too, so ``exact=1`` stays and is refused by the model instead of passing as ``exact=true``.
    """
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return params
    defaults = {n: p.default for n, p in signature.parameters.items() if p.default is not p.empty}
    kept = {k: v for k, v in params.items() if k == "rate" or not _same(v, defaults.get(k, inspect.Parameter.empty))}
    if "rate" in defaults and "rate" not in kept:
        kept["rate"] = defaults["rate"]
    return kept


def _same(value, default) -> bool:
    return type(value) is type(default) and value == default


@dataclass
class Resolved:
    """A job's recipe after the preset and the explicit overrides."""

    model: str
    model_params: dict
    preset: str | None
    base: dict  # the recipe's engine fields
    config: object  # TrainConfig of the run's loss
    loss_params: dict  # as the run is described: a searched parameter is marked (``Selection.marked``)
    method_params: dict  # the method's preset for this preset and noise, under the explicit ones


RECIPE_KEYS = ("model", "model_params", "preset")


def resolve(job: Job) -> Resolved:
    """Merge ``job`` with its dataset's recipe, loss preset and method preset (no data is loaded)."""
    from jal_plugins.plugins import canonical
    from jal_plugins.registry import method_params, preset_params, recipe

    rec = recipe(job.dataset)
    base = {k: v for k, v in rec.items() if k not in RECIPE_KEYS}
    recipe_model = rec.get("model", "auto")
    if recipe_model != "auto":
        recipe_model = canonical("models", recipe_model)
    model = job.model or recipe_model
    # the recipe's network parameters were written for the recipe's network
    model_params = {**(rec.get("model_params", {}) if model == recipe_model else {}), **job.model_params}
    preset = job.preset if job.preset is not None else rec.get("preset")
    config = config_for(base, preset, job.config, job.loss)
    loss_params = {**preset_params(preset, job.loss), **job.loss_params}
    if job.selection is not None:
        loss_params = job.selection.marked(loss_params)
    methods = {**method_params(job.method, preset, job.noise), **job.method_params}
    return Resolved(model, model_params, preset, base, config, loss_params, methods)


def config_for(base: dict, preset: str | None, overrides: dict, loss: str):
    """The recipe ``base`` with ``loss``'s preset regularisation, then ``overrides``."""
    from jal_plugins.engine import TrainConfig
    from jal_plugins.registry import preset_regularization

    return TrainConfig.from_dict({**base, **preset_regularization(preset, loss), **overrides})


def _loss(num_classes: int, preset: str | None, name: str, **params):
    """Loss ``name`` per sample, with ``preset`` under ``params``."""
    from jal_plugins import create_loss

    return create_loss(name, num_classes, preset=preset, reduction="none", **params)


def method_context(*, loss: str, num_classes: int, input_shape: tuple, device, seed: int, model="auto",
                   model_params: dict | None = None, loss_params: dict | None = None, preset: str | None = None,
                   base_config: dict | None = None, config: dict | None = None, noise_rate: float | None = None,
                   ddp: bool = False):  # fmt: skip
    """The ``MethodContext`` of one run: networks for ``input_shape``, losses, configs per loss.

    ``model`` is a registered name, ``"auto"`` or a class ``(num_classes, in_channels, **params)``.
    Everything is a partial of a module-level function, so a context (and a fitted estimator) pickles.
    """
    from jal_plugins import create_model
    from jal_plugins.methods import MethodContext
    from jal_plugins.models import auto_model, check_input, input_spec
    from jal_plugins.plugins import host

    in_channels, input_size = input_spec(input_shape)
    params = dict(model_params or {})
    if model == "auto":
        model = auto_model(input_shape)
    if isinstance(model, str):
        entry = host()["models"].get(model)
        check_input(entry.name, entry.factory, tuple(input_shape))
        build_model = functools.partial(create_model, model, num_classes, in_channels, input_size, **params)
    else:
        check_input(getattr(model, "__name__", repr(model)), model, tuple(input_shape))
        build_model = functools.partial(model, num_classes, in_channels, **params)
    return MethodContext(
        loss, num_classes, device, seed, build_model=build_model,
        build_loss=functools.partial(_loss, num_classes, preset),
        build_config=functools.partial(config_for, dict(base_config or {}), preset, {}),
        noise_rate=noise_rate, ddp=ddp, loss_params=dict(loss_params or {}), config_changes=dict(config or {}),
        input_shape=tuple(input_shape),
    )  # fmt: skip


def corrections_digest(dataset_params: dict) -> str | None:
    """A hash of the contents of the dataset's ``corrections`` file (None without one)."""
    from jal_plugins.datasets.corrections import digest

    path = dataset_params.get("corrections")
    return None if path is None else digest(path)


@functools.lru_cache(maxsize=4)
def _load_dataset(name: str, params_json: str, corrections: str | None):
    """``corrections``: only a key, so an edited corrections file is read again."""
    from jal_plugins.plugins import check_params, host

    entry = host()["datasets"].get(name)
    params = json.loads(params_json)
    check_params(entry, params, skip=0)
    return entry.factory(**params)


def load_dataset(name: str, **params):
    """A registered dataset (cached per process: a grid reuses it)."""
    return _load_dataset(name, json.dumps(params, sort_keys=True), corrections_digest(params))


def noisy_labels(job: Job, data) -> tuple[np.ndarray, str, float | None]:
    """(noisy train labels, noise name, nominal rate) of ``job`` on ``data``."""
    from jal_plugins import create_noise_model
    from jal_plugins.plugins import UnknownNameError

    if job.noise == "none":
        return data.y_train, "none", 0.0
    name, params = parse_spec(job.noise)
    if name in data.noisy_labels:  # real label sets that come with the dataset (CIFAR-N)
        return data.noisy_labels[name], name, None
    try:
        model = create_noise_model(name, **params)
    except UnknownNameError as exc:
        sets = f"; {job.dataset} has the label sets {', '.join(data.noisy_labels)}" if data.noisy_labels else ""
        raise UnknownNameError(f"{exc}{sets}") from None
    features = data.features() if getattr(model, "needs_features", False) else None
    labels = model.apply(data.y_train, num_classes=data.num_classes, seed=job.seed, features=features)
    return labels, name, getattr(model, "rate", None)


@dataclass
class Prepared:
    """A job ready to train: its data, noisy labels, recipe and method context."""

    job: Job
    resolved: Resolved
    data: object  # ArrayDataset
    labels: np.ndarray
    noise_model: str
    noise_rate: float | None
    context: object  # MethodContext
    device: object

    @property
    def model(self) -> str:
        from jal_plugins.models import auto_model

        return auto_model(self.data.input_shape) if self.resolved.model == "auto" else self.resolved.model


def prepare(job: Job, device=None, ddp: bool = False) -> Prepared:
    """Load ``job``'s data and noisy labels and build its method context (``job`` must be canonical)."""
    from jal_plugins.checks import device as resolve_device

    resolved = resolve(job)
    device = resolve_device(job.device if device is None else device)
    data = load_dataset(job.dataset, **job.dataset_params)
    labels, noise_name, rate = noisy_labels(job, data)
    context = method_context(
        loss=job.loss, num_classes=data.num_classes, input_shape=data.input_shape, device=device, seed=job.seed,
        model=resolved.model, model_params=resolved.model_params, loss_params=job.loss_params,
        preset=resolved.preset, base_config=resolved.base, config=job.config, noise_rate=rate, ddp=ddp,
    )  # fmt: skip
    return Prepared(job, resolved, data, labels, noise_name, rate, context, device)


def validate(job: Job) -> Job:
    """Canonicalise ``job`` and check every name and parameter that can be checked without data.

    The job returned carries its effective method parameters (the method preset under the explicit
    ones), so its learner, its record and its run id all see the same values, and its search: loss
    parameters marked ``auto`` become its ``selection`` (``selection.parse``), the rest stay.
    """
    from jal_plugins import create_loss, create_noise_model
    from jal_plugins.checks import device
    from jal_plugins.methods.base import check_values
    from jal_plugins.plugins import check_params, host
    from jal_plugins.selection import parse

    job = job.canonical()
    params, selection = parse(job.loss, job.loss_params, job.method, job.resolved().preset)
    job = replace(job, loss_params=params, selection=job.selection or selection)
    resolved = job.resolved()
    create_loss(job.loss, 2, preset=resolved.preset, **params)
    method = host()["methods"].get(job.method)
    check_params(method, resolved.method_params, skip=1)
    check_values(method.factory, resolved.config, resolved.method_params)
    name, params = parse_spec(job.noise)
    if name in host()["noise_models"].entries:
        create_noise_model(name, **params)
    device(job.device, available=False)  # availability is checked where the run trains
    return replace(job, method_params=resolved.method_params)
