"""Export the slimmed model of one rate: a ``torch.export`` program (``.pt2``, loads with torch alone and
runs no pickled code) and a JSON sidecar saying what it is (PROTOCOL section 5b)."""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from pxp_bench.components import ComponentGroup, Components
from pxp_bench.errors import ConfigError, StorageError, first_line
from pxp_bench.masking import keep_masks, masked, pruned_count
from pxp_bench.slim.efficiency import flop_count, parameter_count
from pxp_bench.slim.surgery import Slimmer, logits_agree

EXPORT_SUFFIX = ".pt2"


def export_rate(rates: list[float], top_pr: float, rate: float | None) -> float:
    """The grid rate to export: ``rate`` itself (it must be on the grid, where accuracy was measured),
    or Top-PR when ``rate`` is None."""
    if rate is None:
        return top_pr
    for on_grid in rates:
        if abs(on_grid - rate) < 1e-9:
            return on_grid
    raise ConfigError(f"--rate {rate:g} is not on the run's grid ({', '.join(f'{r:g}' for r in rates)}); choose one "
                      "of those, add it with --rates, or use --at top-pr.")


def check_destination(destination: Path, *, force: bool = False) -> Path:
    """``destination`` if an export can be written there: a ``.pt2`` path (and its ``.json`` sidecar)
    that is no folder, replaces no file unless ``force``, in a folder that is (made) writable. Called
    before the run, so that a bad ``--to`` costs nothing."""
    from pxp_bench.results import ensure_writable_dir

    destination = Path(destination)
    if destination.suffix != EXPORT_SUFFIX:
        raise ConfigError(f"--to {_shown(destination)} must end in {EXPORT_SUFFIX} (a torch.export program).")
    _check_name_lengths(destination)
    for path in (destination, destination.with_suffix(".json")):
        try:
            if path.is_dir():
                raise ConfigError(f"--to {destination}: {path} is a folder; give a file path such as {path / 'model.pt2'}.")
            if path.exists() and not force:
                raise ConfigError(f"--to {destination}: {path} exists; pass --force to replace it, or choose another --to.")
        except OSError as exc:  # e.g. a folder on the way that cannot be searched
            raise ConfigError(f"--to {_shown(destination)} cannot be checked ({exc.strerror or exc}); choose another "
                              "--to.") from None
    ensure_writable_dir(destination.parent, "--to")
    return destination


def _shown(path: Path, at_most: int = 80) -> str:
    """``path`` for a message: a very long name shortened in its middle."""
    text = str(path)
    return text if len(text) <= at_most else f"{text[:at_most // 2]}...{text[-(at_most // 2):]}"


def _check_name_lengths(destination: Path) -> None:
    """Refuse names the file system cannot hold (the export, its ``.json`` sidecar, or a folder on the way),
    before the run rather than when the export is written after it."""
    existing = next((folder for folder in (destination.parent, *destination.parent.parents) if _is_dir(folder)),
                    Path("."))
    try:
        name_max = os.pathconf(existing, "PC_NAME_MAX")
        path_max = os.pathconf(existing, "PC_PATH_MAX")
    except (OSError, ValueError, AttributeError):  # no pathconf here: the common limits
        name_max, path_max = 255, 4096
    sidecar = destination.with_suffix(".json")
    names = [*((part, "a folder name in it") for part in destination.parent.parts), (destination.name, "its file name"),
             (sidecar.name, f"the name of its sidecar {_shown(Path(sidecar.name), 40)}")]
    for name, what in names:
        if len(os.fsencode(name)) > name_max:
            raise ConfigError(f"--to {_shown(destination)}: {what} is {len(os.fsencode(name))} bytes long, more than "
                              f"the {name_max} this file system allows; choose a shorter --to.")
    if len(os.fsencode(str(sidecar.absolute()))) >= path_max:
        raise ConfigError(f"--to {_shown(destination)}: the path is longer than the {path_max} bytes this system "
                          "allows; choose a shorter --to.")


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a name too long, among others
        return False


def _write_pair(destination: Path, program: bytes, sidecar: bytes, force: bool) -> None:
    """Both files whole or neither: each is written to a temporary beside it and renamed (a full disk fails
    in Python's write, which raises, not in torch's C++ writer, which aborts and leaves a 0-byte file)."""
    from pxp_bench.results import atomic_write_bytes, create_new_file

    written = []
    try:
        for path, data in ((destination, program), (destination.with_suffix(".json"), sidecar)):
            if force:
                atomic_write_bytes(path, data)
            elif not create_new_file(path, data):
                raise FileExistsError(17, "it appeared during the run; pass --force to replace it", str(path))
            written.append(path)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise


def _free_destination(folder: Path, stem: str) -> Path:
    """``folder/stem.pt2``, or ``stem-N.pt2``: a name whose export and sidecar are both free."""
    for counter in range(1, 10_000):
        path = folder / f"{stem if counter == 1 else f'{stem}-{counter}'}{EXPORT_SUFFIX}"
        if not path.exists() and not path.with_suffix(".json").exists():
            return path
    raise FileExistsError(17, "no free name", str(folder / stem))


def _save(destination: Path, program: bytes, sidecar: bytes, force: bool) -> Path:
    """Write the export to ``destination``, or else into the rescue folder (as results are: the work is not
    lost) and raise `StorageError` naming both places; returns the sidecar's path."""
    from pxp_bench.results import rescue_folder

    try:
        _write_pair(destination, program, sidecar, force)
        return destination.with_suffix(".json")
    except OSError as exc:
        failure = f"{exc.filename or destination}: {exc.strerror or exc}"
    try:
        rescued = _free_destination(rescue_folder(), destination.stem)
        _write_pair(rescued, program, sidecar, False)
    except OSError as exc:
        raise StorageError(f"could not write the export ({failure}), nor into the rescue folder "
                           f"({exc.filename}: {exc.strerror or exc}); the result record was written. Free "
                           "space or choose another --to, and rerun the export.") from None
    raise StorageError(f"could not write the export ({failure}); it was saved to {rescued} and "
                       f"{rescued.with_suffix('.json')} in the rescue folder instead. Move them where you want them.")


def _zero_channels(group: ComponentGroup, modules: Mapping[str, nn.Module], dropped: torch.Tensor) -> None:
    """Make the masked channels of ``group`` zero in the weights themselves, so no hook is needed."""
    channels = (dropped[:, None] * group.unit + torch.arange(group.unit)).flatten()  # a head spans `unit` channels
    site = modules[group.site]
    if group.at_input:  # heads: the output projection's columns that read them
        site.weight[:, channels] = 0
        return
    target = site if isinstance(site, (_BatchNorm, nn.Conv2d, nn.Linear)) else modules[group.name]
    if target.weight is None:
        raise ConfigError(f"'{group.site}' has no weights to zero a masked channel in; export at a rate that "
                          "prunes none of its channels, or evaluate masked.")
    target.weight[channels] = 0  # an activation site: zero its producer (f(0) = 0; checked by the caller)
    if target.bias is not None:
        target.bias[channels] = 0


def slimmed_model(model: nn.Module, components: Components, order: torch.Tensor, rate: float,
                  example: torch.Tensor) -> nn.Module:
    """A standalone slimmed copy at ``rate``: removable components removed, the rest zeroed in the
    weights; checked against the masked original."""
    keep = keep_masks(components, order, pruned_count(rate, components.total))
    try:
        slimmer = Slimmer(model, components, example)
        remaining = slimmer.advance(keep)
    except Exception as exc:  # Torch-Pruning cannot trace every model
        raise ConfigError(f"this model cannot be slimmed for export: {first_line(exc)}. Evaluate it with "
                          "--evaluate masked instead.") from None
    slim = slimmer.model
    modules = dict(slim.named_modules())
    with torch.no_grad():
        for group in components.groups:
            dropped = (~remaining[group.name]).nonzero().flatten()
            if len(dropped):
                _zero_channels(group, modules, dropped)
        with masked(model, components, keep):
            expected = model(example)
        got = slim(example)
    if not logits_agree(got, expected):
        raise ConfigError("the exported model would not compute what was evaluated (a masked site is not zero-"
                          "preserving); export at another rate, or report this model.")
    return slim


@contextmanager
def _masks_without_vmap() -> Iterator[None]:
    """While a Hugging Face language model is exported: its attention masks built without ``torch.vmap``.

    Transformers builds the causal mask with ``vmap`` while the model is traced; ``torch.export`` captures
    that as an operation it cannot save (a 120-line SerializeError after the whole run). Transformers'
    own mask for export (``sdpa_mask_without_vmap``) is the same mask without it; it stands in for the
    ``sdpa_mask`` that the eager attention (how pxp-bench loads a language model) builds its mask from.
    """
    masking = sys.modules.get("transformers.masking_utils")  # imported only when a language model was loaded
    if masking is None or not hasattr(masking, "sdpa_mask"):
        yield
        return
    try:
        from transformers.integrations.executorch import sdpa_mask_without_vmap
    except ImportError:
        yield
        return
    original = masking.sdpa_mask
    masking.sdpa_mask = sdpa_mask_without_vmap
    try:
        yield
    finally:
        masking.sdpa_mask = original


def export_slimmed(slim: nn.Module, example: torch.Tensor, destination: Path, sidecar: dict[str, Any], *,
                   force: bool = False) -> Path:
    """Write ``destination`` (``.pt2``) and the sidecar beside it (same stem, ``.json``), replacing earlier
    files only with ``force``; returns the sidecar's path."""
    import io

    destination = check_destination(destination, force=force)
    pair = example[:1].expand(2, *example.shape[1:]).contiguous()  # a batch of 1 would fix the batch size to 1
    try:
        with _masks_without_vmap():
            program = torch.export.export(slim.eval(), (pair,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    except Exception as exc:  # e.g. a reshape that fixes the batch size
        raise ConfigError(f"torch.export cannot capture this model: {first_line(exc)}.") from None
    sidecar = {**sidecar, "parameters": parameter_count(slim), "flops": flop_count(slim, example),
               "input_shape": list(example.shape[1:]), "format": "torch.export (torch.export.load(path).module())"}
    buffer = io.BytesIO()
    try:
        torch.export.save(program, buffer)
    except Exception as exc:  # a captured operation torch.export has no serialisation for
        raise ConfigError(f"torch.export cannot save this model's program: {first_line(exc)}; the result record was "
                          "written, evaluate the model with pxp-bench instead.") from None
    return _save(destination, buffer.getvalue(), (json.dumps(sidecar, indent=2) + "\n").encode(), force)


def export_result(prepared, result, destination: Path, rate: float | None, *,
                  force: bool = False) -> tuple[Path, dict[str, Any]]:
    """Export the slimmed model of ``result`` (a run on ``prepared``) at ``rate`` or Top-PR; returns the
    sidecar's path and content."""
    from importlib.metadata import version

    from pxp_bench.prepare import example_input
    from pxp_bench.masking import rank_components

    chosen = export_rate(result.rates, result.metrics["top_pr"], rate)
    components = prepared.components
    order = rank_components(components, result.scores, prepared.bench.max_layer_rate)
    example = example_input(prepared)
    slim = slimmed_model(prepared.model, components, order, chosen, example)
    keep = keep_masks(components, order, pruned_count(chosen, components.total))
    point = next(p for p in result.curve if p["rate"] == chosen)
    sidecar = {
        "source_model": result.model, "weights": result.weights, "dataset": result.dataset, "seed": result.seed,
        "method": result.method, "variant": result.variant, "params": result.params,
        "components": result.components, "rate": chosen, "top_pr": result.metrics["top_pr"],
        "pruned": {name: (~mask).nonzero().flatten().tolist() for name, mask in keep.items() if not mask.all()},
        "classes": result.classes, "class_names": result.samples.get("class_names"),
        "accuracy": point["accuracy"], "correct": point["correct"],
        "evaluation_samples": result.samples.get("evaluation"),
        "evaluation_hash": result.samples.get("evaluation_hash"),
        "logits": "all of the model's classes; the accuracy is top-1 over `classes` only (PROTOCOL section 1)",
        "pxp_bench": version("pxp-bench"),
    }
    info = export_slimmed(slim, example, destination, sidecar, force=force)
    return info, json.loads(info.read_text())
