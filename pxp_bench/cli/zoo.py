"""``pxp-bench zoo train``: train a zoo model's checkpoint and manifest, with a progress bar."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from pxp_bench.cli.common import console, err_console, user_errors
from pxp_bench.errors import ConfigError

zoo_app = typer.Typer(help="The embedded model zoo: train a zoo model's checkpoint and manifest (`zoo train`).",
                      no_args_is_help=True)


@zoo_app.command("train")
@user_errors
def zoo_train(
    model: Annotated[str, typer.Argument(help="Zoo model name, e.g. digits-vgg or tiny-llama.")],
    out: Annotated[Path, typer.Option(help="Folder for MODEL.safetensors and its manifest MODEL.json.")],
    epochs: Annotated[Optional[int], typer.Option(help="Training epochs (default: the model's, 30 or 40).")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Training steps of tiny-llama (default 2000).")] = None,
    seed: Annotated[int, typer.Option(help="Training seed (0 to 4294967295).")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Replace MODEL.safetensors and MODEL.json if --out has them.")] = False,
) -> None:
    """Train a zoo model (digits' train split; tiny-llama: the generated corpus' train split), reproducibly,
    and write checkpoint + manifest."""
    from rich.progress import Progress

    from pxp_bench.lm.embedded import DEFAULT_STEPS, EMBEDDED_LM, train_embedded_lm
    from pxp_bench.models.training import DEFAULT_EPOCHS, train_zoo_model

    if model == EMBEDDED_LM:
        if epochs is not None:
            raise ConfigError(f"{model} trains in steps: pass --steps, not --epochs.")
        steps = DEFAULT_STEPS if steps is None else steps
        command = f"pxp-bench zoo train {model} --out {out} --steps {steps} --seed {seed}"
        with Progress(console=err_console) as bars:
            task = bars.add_task(f"training {model}", total=steps)
            trained = train_embedded_lm(out, steps=steps, seed=seed, command=command, force=force,
                                        on_step=lambda step, loss: bars.update(task, completed=step))
        console.print(f"eval next-token accuracy {trained.eval_accuracy:.4f}; wrote {trained.checkpoint} "
                      f"(sha256 {trained.sha256[:12]}...) and {trained.manifest}", highlight=False)
        return
    if steps is not None:
        raise ConfigError(f"{model} trains in epochs: pass --epochs, not --steps.")
    epochs = DEFAULT_EPOCHS.get(model, 30) if epochs is None else epochs
    command = f"pxp-bench zoo train {model} --out {out} --epochs {epochs} --seed {seed}"
    with Progress(console=err_console) as bars:
        task = bars.add_task(f"training {model}", total=epochs)
        trained = train_zoo_model(model, out, epochs=epochs, seed=seed, command=command, force=force,
                                  on_epoch=lambda epoch, loss: bars.update(task, completed=epoch))
    console.print(f"eval accuracy {trained.eval_accuracy:.4f}; wrote {trained.checkpoint} "
                  f"(sha256 {trained.sha256[:12]}...) and {trained.manifest}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the `zoo` group to the app."""
    app.add_typer(zoo_app, name="zoo")
