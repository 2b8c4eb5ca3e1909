"""The plugin manager: built-in and external plugins, name registries, "did you mean" errors.

Built-ins answer the same hooks as third-party plugins. External plugins come from the ``pxp_bench``
entry-point group; ``PXP_BENCH_LOAD_PLUGINS`` (comma list of distribution names, empty = none) limits
which load. Each plugin's hook is called with a ``register`` callback bound to that plugin, so a
duplicate name can name both plugins and a failure can name the one that raised.

A plugin that fails (to import, to validate, or in a hook: raising, registering a duplicate or a
nameless spec) is isolated: it is recorded as failed with one message naming it and its distribution,
everything it registered is withdrawn, and the core and the other plugins keep working. Its failure is
a warning when a registry is first used, ``pxp-bench plugins`` lists it, and asking for a name it would
have registered says that it failed.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import importlib.metadata
import os
import re
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Generic, Iterator, TypeVar

import pluggy

from pxp_bench import hookspecs
from pxp_bench.errors import PluginError, UnknownNameError

LOAD_ENV = "PXP_BENCH_LOAD_PLUGINS"
BUILTIN_PLUGINS = (
    "pxp_bench.attribution.builtin",
    "pxp_bench.attribution.torch_pruning_builtin",
    "pxp_bench.attribution.captum_builtin",
    "pxp_bench.models.builtin",
    "pxp_bench.data.builtin",
    "pxp_bench.optimize.builtin",
    "pxp_bench.suites.builtin",
    "pxp_bench.tasks.builtin",
    "pxp_bench.lm.builtin",
)
BUILTIN_DISTRIBUTION = "pxp-bench"
REGISTRIES = {  # registry attribute: (kind of name, hook that fills it)
    "methods": ("method", "register_methods"),
    "models": ("model", "register_models"),
    "datasets": ("dataset", "register_datasets"),
    "optimizers": ("optimizer", "register_optimizers"),
    "executors": ("executor", "register_executors"),
    "tasks": ("task", "register_tasks"),
}

T = TypeVar("T")


def _normalise(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


class Registry(Generic[T]):
    """Names of one kind (``method``, ``model``, ...) mapped to their specs and owning plugins."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._owners: dict[str, str] = {}
        self.failed: list[str] = []
        """Why plugins that might have provided a missing name did not load: for unknown-name errors."""
        self.selection = ""
        """How ``PXP_BENCH_LOAD_PLUGINS`` limits the external plugins, if it does: for unknown-name errors."""

    def withdraw(self, owner: str) -> None:
        """Remove every name ``owner`` registered (a plugin that failed)."""
        for name in [name for name, by in self._owners.items() if by == owner]:
            del self._items[name], self._owners[name]

    def add(self, item: T, owner: str) -> None:
        name = getattr(item, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(f"registered a {self.kind} without a name: {item!r}.")
        if name in self._items:
            raise PluginError(
                f"{self.kind} '{name}' is registered twice: by plugin '{self._owners[name]}' and by "
                f"plugin '{owner}'. Uninstall one of them, or select plugins with {LOAD_ENV}."
            )
        self._items[name] = item
        self._owners[name] = owner

    def _registered(self, name: str) -> str | None:
        """The registered name that serves ``name``: itself, or a family's prefix (the model "hf:" serves
        hf:ORG/NAME)."""
        if name in self._items:
            return name
        prefix = name.partition(":")[0] + ":"
        return prefix if ":" in name and prefix in self._items else None

    def get(self, name: str) -> T:
        registered = self._registered(name)
        if registered is not None:
            return self._items[registered]
        close = difflib.get_close_matches(name, list(self._items), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        failed = f" ({'; '.join(self.failed)})" if self.failed else ""
        selection = f" {self.selection}" if self.selection else ""
        raise UnknownNameError(
            f"unknown {self.kind} '{name}'.{hint} See `pxp-bench list {self.kind}s` for all names.{failed}{selection}"
        )

    def names(self, pattern: str | None = None) -> list[str]:
        """Sorted names, optionally filtered by an fnmatch wildcard (case-insensitive)."""
        names = sorted(self._items)
        if pattern:
            names = [n for n in names if fnmatch.fnmatch(n.lower(), pattern.lower())]
        return names

    def owner(self, name: str) -> str:
        return self._owners[self._registered(name) or name]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[T]:
        return iter(self._items[n] for n in sorted(self._items))


@dataclass
class PluginInfo:
    """One plugin: where it comes from, what it registered, and why it failed (``error``), if it did."""

    name: str
    distribution: str
    version: str
    source: str  # "builtin", "entry point" or "code"
    registers: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None

    @property
    def status(self) -> str:
        return "loaded" if self.error is None else f"failed: {self.error}"

    def failure(self) -> str:
        """The one line that names the failed plugin and how to get past it."""
        return (f"plugin '{self.name}' from {self.distribution} {self.version} failed and is not loaded: "
                f"{self.error}. Fix or uninstall {self.distribution}, or leave it out of {LOAD_ENV}.")


def _external_entry_points(selected: dict[str, str] | None) -> Iterator[tuple[Any, str, str]]:
    """Entry points of group ``pxp_bench`` as (entry point, distribution, version), filtered.

    Warns about selected distributions that provide none: a misspelt name would otherwise just
    leave the plugin out without a word.
    """
    seen: set[tuple[str, str]] = set()
    for dist in importlib.metadata.distributions():
        dist_name = dist.metadata["Name"] or "unknown"
        if _normalise(dist_name) == BUILTIN_DISTRIBUTION:
            continue
        if selected is not None and _normalise(dist_name) not in selected:
            continue
        for entry_point in dist.entry_points:
            if entry_point.group == hookspecs.PROJECT and (dist_name, entry_point.name) not in seen:
                seen.add((dist_name, entry_point.name))
                yield entry_point, dist_name, dist.version
    found = {_normalise(dist_name) for dist_name, _ in seen} | {BUILTIN_DISTRIBUTION}
    for normalised, written in (selected or {}).items():
        if normalised not in found:
            warnings.warn(
                f"{LOAD_ENV} names '{written}', but no installed distribution of that name provides a "
                f"pxp-bench plugin. Install it, or correct or remove the name in {LOAD_ENV}.",
                UserWarning,
            )


def _selection_note() -> str:
    """What ``PXP_BENCH_LOAD_PLUGINS`` leaves out, for a name no loaded plugin registers ("" when unset)."""
    raw = os.environ.get(LOAD_ENV)
    if raw is None:
        return ""
    if not raw.strip():
        return (f"External plugins are disabled by {LOAD_ENV}={raw!r}: unset it to load every installed plugin, "
                "or set it to the distributions to load.")
    return (f"Only the plugins of {raw.strip()} load ({LOAD_ENV}): add the distribution that provides it, or "
            "unset the variable to load every installed plugin.")


def _selected_distributions(load_external: bool | None) -> dict[str, str] | None:
    """None = every installed plugin; else the selected distributions, normalised name -> as written."""
    if load_external is False:
        return {}
    raw = os.environ.get(LOAD_ENV)
    if raw is None:
        return None
    return {_normalise(part.strip()): part.strip() for part in raw.split(",") if part.strip()}


class Plugins:
    """The loaded plugins and the registries their hooks filled."""

    def __init__(self, *, load_external: bool | None = None, extra: tuple[object, ...] = ()) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self._registries: dict[str, Registry] = {}
        self._warned: set[str] = set()
        self._selection = _selection_note() if load_external is None else ""
        version = importlib.metadata.version(BUILTIN_DISTRIBUTION)
        for module_name in BUILTIN_PLUGINS:
            self._register(importlib.import_module(module_name), module_name,
                           BUILTIN_DISTRIBUTION, version, "builtin")
        for entry_point, dist_name, dist_version in _external_entry_points(
            _selected_distributions(load_external)
        ):
            try:
                plugin = entry_point.load()
            except Exception as exc:  # a broken third-party plugin must not look like our bug
                self._add_info(entry_point.name, dist_name, dist_version, "entry point",
                               error=f"{type(exc).__name__}: {exc}")
                continue
            self._register(plugin, entry_point.name, dist_name, dist_version, "entry point")
        for plugin in extra:
            name = getattr(plugin, "__name__", type(plugin).__name__)
            self._register(plugin, name, "(registered in code)", "", "code")

    # Registries fill on first use: the CLI loads plugins for their commands without paying for
    # hooks that import heavy libraries (model lists come from torchvision and timm).
    @property
    def methods(self) -> Registry:
        return self._registry("methods")

    @property
    def models(self) -> Registry:
        return self._registry("models")

    @property
    def datasets(self) -> Registry:
        return self._registry("datasets")

    @property
    def optimizers(self) -> Registry:
        return self._registry("optimizers")

    @property
    def executors(self) -> Registry:
        return self._registry("executors")

    @property
    def tasks(self) -> Registry:
        return self._registry("tasks")

    def collect_all(self) -> None:
        """Fill every registry now (``pxp-bench plugins`` shows what each plugin registered, and which
        failed), without the registry attributes' warnings."""
        for registry in REGISTRIES:
            self._filled(registry)

    def failed(self) -> list[PluginInfo]:
        return [info for info in self.infos.values() if info.error is not None]

    def _registry(self, registry: str) -> Registry:
        """The filled registry; each failed plugin is a warning once, so its missing names are not silent."""
        filled = self._filled(registry)
        for info in self.failed():
            if info.name not in self._warned:
                self._warned.add(info.name)
                warnings.warn(info.failure(), UserWarning, stacklevel=3)
        filled.failed = [info.failure() for info in self.failed()]
        filled.selection = self._selection
        return filled

    def _filled(self, registry: str) -> Registry:
        if registry not in self._registries:
            self._registries[registry] = self._collect(*REGISTRIES[registry])
        return self._registries[registry]

    def _fail(self, name: str, error: str) -> None:
        """Isolate plugin ``name``: record why, stop calling it, withdraw what it registered."""
        info = self.infos[name]
        info.error = error
        info.registers = {}
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin)
        for filled in self._registries.values():
            filled.withdraw(name)

    def _add_info(self, name: str, distribution: str, version: str, source: str, error: str | None = None) -> None:
        if name in self.infos:
            raise PluginError(
                f"two plugins are named '{name}' ({self.infos[name].distribution} and {distribution}). "
                f"Uninstall one, or select plugins with {LOAD_ENV}."
            )
        self.infos[name] = PluginInfo(name, distribution, version, source, error=error)

    def _register(self, plugin: object, name: str, distribution: str, version: str, source: str) -> None:
        """Register ``plugin``, or record it as failed when pluggy refuses it or a hook name is unknown."""
        self._add_info(name, distribution, version, source)
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()  # pluggy never calls a hook without a spec: a typo would register nothing
        except ValueError as exc:  # pluggy: this module is registered already, under another name
            self.infos[name].error = str(exc)
        except pluggy.PluginValidationError as exc:
            if self.pm.is_registered(plugin):  # pluggy leaves a plugin it refused half-registered
                self.pm.unregister(plugin)
            reason = " ".join(str(exc).replace(repr(exc.plugin), repr(name)).split())  # no module repr
            hooks = sorted(hook for hook, caller in vars(self.pm.hook).items() if caller.has_spec())
            self.infos[name].error = f"{reason} (pxp-bench's hooks are {', '.join(hooks)})"

    def call_each(self, hook_name: str, argument: str, make_value: Callable[[str], Any],
                  on_failure: Callable[[str], None] = lambda name: None) -> None:
        """Call ``hook_name`` on every plugin with ``argument=make_value(plugin name)``.

        A built-in's failure is our bug and raises; a third-party plugin's failure isolates that plugin
        (`_fail`), after ``on_failure(plugin name)`` withdraws what this call made of it.
        """
        impls = getattr(self.pm.hook, hook_name).get_hookimpls()  # pluggy's order puts trylast first:
        for impl in sorted(impls, key=lambda i: self.infos[i.plugin_name].source != "builtin"):  # ours first
            info = self.infos[impl.plugin_name]
            try:
                impl.function(**{argument: make_value(impl.plugin_name)})
            except Exception as exc:
                if info.source == "builtin":
                    raise
                reason = str(exc) if isinstance(exc, PluginError) else f"{hook_name} raised {type(exc).__name__}: {exc}"
                on_failure(impl.plugin_name)
                self._fail(impl.plugin_name, reason.rstrip("."))

    def _collect(self, kind: str, hook_name: str) -> Registry:
        registry: Registry = Registry(kind)

        def bound(plugin_name: str) -> Callable[[Any], None]:
            def register(spec: Any) -> None:
                registry.add(spec, plugin_name)
                self.infos[plugin_name].registers.setdefault(f"{kind}s", []).append(spec.name)

            return register

        self.call_each(hook_name, "register", bound, on_failure=registry.withdraw)
        return registry


@lru_cache(maxsize=1)
def get_plugins() -> Plugins:
    """The process-wide plugins, loaded once (honours ``PXP_BENCH_LOAD_PLUGINS``)."""
    return Plugins()


def plugin_culprit(plugins: Plugins, what: str, owner: str) -> str:
    """``what`` and the plugin that registered it, with its distribution: whom a user asks for a fix."""
    info = plugins.infos[owner]
    return f"{what} from plugin '{info.name}' ({' '.join(filter(None, (info.distribution, info.version)))})"
