"""Plugin host: loads the built-ins and the ``jal_plugins`` entry points into named catalogues.

Loading is lazy (first lookup), each registration records the distribution that provided it, the
built-ins are loaded first so their names win a clash, and a broken third-party plugin becomes a
warning instead of taking the whole catalogue down.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import inspect
import os
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import pluggy

from jal_plugins import hookspecs

OWN_DIST = "jal-plugins"
BUILTIN_MODULE = "jal_plugins.builtins"
# hook name -> catalogue kind
HOOKS = {
    "register_losses": "losses",
    "register_noise_models": "noise_models",
    "register_models": "models",
    "register_datasets": "datasets",
    "register_methods": "methods",
}
SINGULAR = {"losses": "loss", "noise_models": "noise model", "models": "model", "datasets": "dataset",
            "methods": "method"}  # fmt: skip


class PluginWarning(UserWarning):
    """A plugin failed to load or register; the rest of the catalogue is still usable."""


class NameConflictWarning(PluginWarning):
    """Two providers registered the same name; the first (built-ins first) is kept."""


class UnknownNameError(KeyError):
    """A catalogue has no entry of that name."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


def normalize(name: str) -> str:
    """Lookup key: case-insensitive, ``-`` and ``_`` alike."""
    return name.strip().lower().replace("_", "-")


def normalize_dist(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def own_version() -> str:
    """The installed jal-plugins version ("unknown" in a source tree that was never installed)."""
    try:
        return importlib.metadata.version(OWN_DIST)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def canonical(kind: str, name: str) -> str:
    """The registered name behind ``name`` (an alias, other case or ``_`` for ``-``)."""
    return host()[kind].get(name).name


@dataclass(frozen=True)
class Entry:
    name: str
    factory: Callable[..., Any]
    provider: str
    version: str
    aliases: tuple[str, ...] = ()


@dataclass
class Catalogue:
    """Names -> factories of one kind (losses, noise models, ...)."""

    kind: str
    entries: dict[str, Entry] = field(default_factory=dict)  # canonical name -> entry
    keys: dict[str, str] = field(default_factory=dict)  # normalised name or alias -> canonical

    def add(self, entry: Entry) -> None:
        for key in (entry.name, *entry.aliases):
            taken = self.keys.get(normalize(key))
            if taken is not None:
                first = self.entries[taken]
                warnings.warn(
                    f"{SINGULAR[self.kind]} name {key!r} from {entry.provider} is already registered "
                    f"by {first.provider} (as {taken!r}); keeping {first.provider}'s",
                    NameConflictWarning,
                    stacklevel=2,
                )
                if key == entry.name:
                    return
        self.entries[entry.name] = entry
        for key in (entry.name, *entry.aliases):
            self.keys.setdefault(normalize(key), entry.name)

    def get(self, name: str) -> Entry:
        if not isinstance(name, str):
            raise UnknownNameError(f"{SINGULAR[self.kind]} name must be a string, got {name!r}")
        canonical = self.keys.get(normalize(name))
        if canonical is None:
            close = difflib.get_close_matches(normalize(name), list(self.keys), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(repr(self.keys[c]) for c in close)}?" if close else ""
            raise UnknownNameError(
                f"unknown {SINGULAR[self.kind]} {name!r}{hint} "
                f"(known: {', '.join(sorted(self.entries))})"
            )
        return self.entries[canonical]

    def providers(self) -> dict[str, str]:
        return {name: e.provider for name, e in self.entries.items()}


def check_params(entry: Entry, params: dict, skip: int) -> None:
    """Refuse parameter names the factory does not take (``skip`` leading positional arguments)."""
    sig = inspect.signature(entry.factory)
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return
    accepted = [n for n in list(sig.parameters)[skip:] if n != "reduction"]
    unknown = [n for n in params if n not in accepted]
    if unknown:
        raise ValueError(
            f"{entry.name!r} got unknown parameter(s) {', '.join(map(repr, unknown))}; "
            f"it takes: {', '.join(accepted) or 'no parameters'}"
        )


class PluginHost:
    """A pluggy ``PluginManager`` plus one ``Catalogue`` per hook.

    ``autoload`` (default: unless ``JAL_PLUGINS_DISABLE_AUTOLOAD=1``) loads entry points; ``only``
    (default: ``JAL_PLUGINS_LOAD=dist1,dist2``) restricts them to those distributions.
    """

    def __init__(self, autoload: bool | None = None, only: list[str] | None = None):
        self.autoload = autoload
        self.only = only
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.catalogues = {kind: Catalogue(kind) for kind in HOOKS.values()}
        self.plugins: list[tuple[str, object, str, str]] = []  # (name, plugin, dist, version)
        self._loaded = False

    def __getitem__(self, kind: str) -> Catalogue:
        self.load()
        return self.catalogues[kind]

    def load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        builtin = importlib.import_module(BUILTIN_MODULE)
        self._add_plugin(OWN_DIST, builtin, OWN_DIST, own_version())
        if self._autoload():
            self._load_entry_points()
        for plugin in self.plugins:
            self._call_hooks(*plugin)

    def _autoload(self) -> bool:
        if self.autoload is not None:
            return self.autoload
        return os.environ.get("JAL_PLUGINS_DISABLE_AUTOLOAD", "").strip().lower() not in ("1", "true", "yes")

    def _only(self) -> set[str] | None:
        only = self.only
        if only is None:
            env = os.environ.get("JAL_PLUGINS_LOAD", "").strip()
            only = [d for d in env.split(",") if d.strip()] if env else None
        return {normalize_dist(d.strip()) for d in only} if only is not None else None

    def _load_entry_points(self) -> None:
        only = self._only()
        for ep in importlib.metadata.entry_points(group=hookspecs.PROJECT):
            dist = ep.dist.name if ep.dist else ep.name
            version = ep.dist.version if ep.dist else "?"
            if normalize_dist(dist) == OWN_DIST or (only is not None and normalize_dist(dist) not in only):
                continue
            if self.pm.get_plugin(ep.name) is not None:
                warnings.warn(f"plugin {ep.name!r} from {dist} is already loaded; skipped", PluginWarning, stacklevel=3)
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001 - any import error of a third party
                warnings.warn(
                    f"jal_plugins plugin {ep.name!r} ({ep.value}) from {dist} {version} failed to import: "
                    f"{type(exc).__name__}: {exc}",
                    PluginWarning,
                    stacklevel=3,
                )
                continue
            self._add_plugin(ep.name, plugin, dist, version)

    def _add_plugin(self, name: str, plugin: object, dist: str, version: str) -> None:
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()
        except (pluggy.PluginValidationError, ValueError) as exc:
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            warnings.warn(f"jal_plugins plugin {name!r} from {dist} is invalid: {exc}", PluginWarning, stacklevel=4)
            return
        self.plugins.append((name, plugin, dist, version))

    def _call_hooks(self, name: str, plugin: object, dist: str, version: str) -> None:
        for caller in self.pm.get_hookcallers(plugin) or ():
            catalogue = self.catalogues[HOOKS[caller.name]]

            def register(entry_name, factory, *, aliases=(), _cat=catalogue):
                if not callable(factory):
                    raise TypeError(f"factory for {entry_name!r} is not callable")
                _cat.add(Entry(entry_name, factory, dist, version, tuple(aliases)))

            for impl in caller.get_hookimpls():
                if impl.plugin is not plugin:
                    continue
                try:
                    impl.function(register=register)
                except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the host
                    if dist == OWN_DIST:
                        raise
                    warnings.warn(
                        f"jal_plugins plugin {name!r} from {dist} {version} failed in {caller.name}: "
                        f"{type(exc).__name__}: {exc}",
                        PluginWarning,
                        stacklevel=4,
                    )

    def versions(self) -> dict[str, str]:
        """Providing distribution -> version, for every loaded plugin."""
        self.load()
        return {dist: version for _, _, dist, version in self.plugins}


_default: PluginHost | None = None


def host() -> PluginHost:
    """The process-wide plugin host (created on first use)."""
    global _default
    if _default is None:
        _default = PluginHost()
    return _default


def reset() -> None:
    """Forget the loaded plugins; the next lookup loads them again (tests, notebooks)."""
    global _default
    _default = None
