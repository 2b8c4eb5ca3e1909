"""The four choices beyond the paper's protocol (`Condition`): how a pruned component is removed
(``removal``), what happens after pruning (``recover``), how the pruned set grows (``schedule``) and
where the least relevant are taken from (``scope``). The paper's protocol is zero removal, no
recovery, one shot, global: every record names its four choices (a record made before they existed
ran the paper's), and leaderboard rows never mix conditions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from pxp_bench.errors import ConfigError

REMOVALS = ("zero", "mean")
"""``zero``: a pruned component's output is 0; ``mean``: its mean over the reference samples (mean ablation)."""
RECOVERIES = ("none", "bn", "finetune")
"""``none``: measured as pruned; ``bn``: BatchNorm statistics re-estimated; ``finetune``: trained for some steps."""
SCHEDULES = ("oneshot", "iterative")
"""``oneshot``: one scoring, one ranking; ``iterative``: re-scored at every rate of the grid, sets nested."""
SCOPES = ("global", "layer")
"""``global``: the least relevant of the whole model; ``layer``: the same fraction of every layer."""

DEFAULT_RECOVER_STEPS = 100
"""``--recover-steps`` for ``--recover finetune`` when not given."""
MAX_RECOVER_STEPS = 100_000
"""More fine-tuning steps than this per rate is refused: a benchmark's recovery, not a training run."""


@dataclass(frozen=True)
class Condition:
    """A run's four choices; ``recover_steps`` is set for ``finetune`` only."""

    removal: str = "zero"
    recover: str = "none"
    schedule: str = "oneshot"
    scope: str = "global"
    recover_steps: int | None = None

    @property
    def is_paper(self) -> bool:
        """Whether this is the paper's protocol (zero removal, no recovery, one shot, global)."""
        return self == PAPER

    @property
    def label(self) -> str:
        """For headings and legends: ``paper protocol``, or what differs from it (``mean removal``,
        ``BN recalibration``, ``fine-tuning 100 steps``, ``iterative``, ``layer-wise``)."""
        if self.is_paper:
            return "paper protocol"
        parts = []
        if self.removal != "zero":
            parts.append(f"{self.removal} removal")
        if self.recover == "bn":
            parts.append("BN recalibration")
        elif self.recover == "finetune":
            parts.append(f"fine-tuning {self.recover_steps} steps")
        if self.schedule != "oneshot":
            parts.append(self.schedule)
        if self.scope != "global":
            parts.append("layer-wise")
        return ", ".join(parts)

    @property
    def description(self) -> str:
        """All four choices spelled out: ``removal zero · recover none · schedule oneshot · scope global``."""
        recover = self.recover if self.recover != "finetune" else f"finetune ({self.recover_steps} steps)"
        return f"removal {self.removal} · recover {recover} · schedule {self.schedule} · scope {self.scope}"


PAPER = Condition()
"""The paper's protocol, and every option's default."""


def condition_of(options: Any) -> Condition:
    """The condition of a `pxp_bench.plan.Benchmark` (or anything with its four attributes)."""
    return Condition(options.removal, options.recover, options.schedule, options.scope,
                     _steps(options.recover, options.recover_steps))


def _steps(recover: str, steps: int | None) -> int | None:
    """Fine-tuning steps count for ``finetune`` only (`DEFAULT_RECOVER_STEPS` when not given)."""
    if recover != "finetune":
        return None
    return DEFAULT_RECOVER_STEPS if steps is None else steps


def condition_of_record(record: Mapping[str, Any]) -> Condition:
    """The condition a stored record ran under, from its ``options`` (`pxp_bench.plan.run_options`); a choice
    it does not name is the paper's (records made before the four choices existed ran it)."""
    stored = record.get("options") or {}
    return Condition(stored.get("removal", "zero"), stored.get("recover", "none"), stored.get("schedule", "oneshot"),
                     stored.get("scope", "global"), _steps(stored.get("recover", "none"), stored.get("recover_steps")))


def check_choices(removal: str, recover: str, schedule: str, scope: str, recover_steps: int | None) -> None:
    """Each choice one of its kind's (one line naming the option and its choices), and ``--recover-steps``
    a positive count below `MAX_RECOVER_STEPS`, given with ``--recover finetune`` only."""
    for option, value, choices in (("--removal", removal, REMOVALS), ("--recover", recover, RECOVERIES),
                                   ("--schedule", schedule, SCHEDULES), ("--scope", scope, SCOPES)):
        if value not in choices:
            raise ConfigError(f"{option} must be one of {', '.join(choices)}, got {value!r}.")
    if recover_steps is None:
        return
    if recover != "finetune":
        raise ConfigError(f"--recover-steps counts fine-tuning steps; it applies to --recover finetune only "
                          f"(this run has --recover {recover}). Drop it, or add --recover finetune.")
    if isinstance(recover_steps, bool) or not isinstance(recover_steps, int) or not 1 <= recover_steps <= MAX_RECOVER_STEPS:
        raise ConfigError(f"--recover-steps must be a whole number of steps from 1 to {MAX_RECOVER_STEPS:,} per rate, "
                          f"got {recover_steps!r}.")
