"""The paper's published A_PR (ViT-B/16 on ImageNet, 3 classes), shown beside ours in ImageNet tables."""

from __future__ import annotations

PAPER_DATASET = "imagenet"
PAPER_MODEL = "vit_b_16"
PAPER_CLASSES = 3
PAPER_SOURCE = ("Hatefi et al., *Pruning By Explaining Revisited* (arXiv 2408.12568): ViT-B/16 on ImageNet "
                "with 3 classes")

PAPER_A_PR: dict[tuple[str, str, str], float] = {
    ("neurons", "lrp", "optimised"): 0.87,
    ("neurons", "lrp", "epsilon"): 0.83,
    ("neurons", "lrp", "yeom"): 0.77,
    ("neurons", "ig", "default"): 0.70,
    ("neurons", "random", "default"): 0.59,
    ("heads", "lrp", "optimised"): 0.85,
    ("heads", "lrp", "epsilon"): 0.85,
    ("heads", "lrp", "yeom"): 0.74,
    ("heads", "random", "default"): 0.76,
}
"""(components, method, variant) -> A_PR, from the paper's transformer results (docs/protocol.md section
10); the paper has no Integrated Gradients number for heads."""


def shows_paper(dataset: str) -> bool:
    """Whether a table gets the paper's column: only ImageNet tables, where the paper has numbers."""
    return dataset == PAPER_DATASET


def paper_a_pr(model: str, components: str, classes: int, method: str, variant: str) -> float | None:
    """The paper's A_PR for a row of ours, or None where the paper reports nothing comparable."""
    if model != PAPER_MODEL or classes != PAPER_CLASSES:
        return None
    return PAPER_A_PR.get((components, method, variant))


def paper_note(components: str) -> str:
    """The sentence under an ImageNet table: where the paper column comes from."""
    note = (f"The paper A_PR column is from {PAPER_SOURCE}; the paper averages 20 seeds, this table the "
            f"seeds listed. It is shown for `{PAPER_MODEL}` rows with {PAPER_CLASSES} classes only.")
    if components == "neurons":
        note += (" The paper's neurons include the MLP output rows, which pxp-bench does not prune "
                 "(docs/protocol.md section 9): read those numbers as related, not identical.")
    return note
