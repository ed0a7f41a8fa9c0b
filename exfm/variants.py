"""The VM variants of EXFM.md, in one place: what each trains, whether it reads the FM's stored
predictions and trains a Student Adapter, and how reports name it. The config (vm.variant), the
CLI's choices, the Airflow form, the trainer, the experiments and the reports all read this
registry; adding a variant is one entry here plus its loss in `exfm.trainee.Trainee._vm_loss`.

Also the names every layer shares: the pooled scope "all" (every vertical together), the FM's
registry name "fm" and a VM's `vm_<variant>`. Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

POOLED = "all"  # the scope "every vertical together": reserved, never a vertical's name
FM = "fm"  # the foundation model's name in the registry and the evaluations


@dataclass(frozen=True)
class Variant:
    """One way to train a vertical model."""

    name: str
    title: str  # how reports name it
    needs_fm: bool  # distills from the FM's stored predictions (the DAS)
    adapter: bool  # trains a Student Adapter beside the VM (Algorithm 1)
    loss: str  # the loss, in EXFM.md's terms


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("baseline", "baseline VM (labels only)", False, False, "BCE(y)"),
        Variant("kd", "vanilla KD", True, False, "BCE(y) + w * BCE(p_F)"),
        Variant("ah", "Auxiliary Head (AH)", True, False, "BCE(y) + w * L_ah(alpha, beta)"),
        Variant(
            "ah2",
            "AH + 2nd head on raw FM (SA control)",
            True,
            False,
            "L_ah + w_sa * h(d2, p_F): the Student Adapter's control",
        ),
        Variant(
            "ah_sa",
            "AH + Student Adapter",
            True,
            True,
            "L_ah + w_sa * h(d2, SA(p_F)), the adapter trained on fresh labels",
        ),
    )
}
NAMES: tuple[str, ...] = tuple(VARIANTS)
# The config's type for a variant name (checked by exfm/config.py like any Literal).
VariantName = Literal[NAMES]  # type: ignore[valid-type]
DEFAULT = "ah_sa"
BASELINE = "baseline"  # labels only: what every distilled variant is compared with


def variant(name: str) -> Variant:
    """The variant called `name`; ValueError naming the known ones otherwise."""
    found = VARIANTS.get(name)
    if found is None:
        raise ValueError(f"unknown VM variant {name!r}; variants: {list(NAMES)}")
    return found


def vm_model_name(name: str) -> str:
    """The registry's model name of a variant's VMs."""
    return f"vm_{variant(name).name}"
