"""What the meter answers: values, not exceptions."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Item:
    """One (category, quantity) asked for, optionally inside a capped project."""

    category: str
    quantity: int
    project: str = ""


@dataclass(frozen=True, slots=True)
class ItemDecision:
    category: str
    quantity: int
    accepted: bool
    granted: int
    source: str | None
    """``allowance`` or ``on_demand`` (when any of the grant spilled past the allowance)."""
    remaining: int | None
    """Allowance left after this item; ``None`` is unlimited."""
    limit: int | None
    reason: str | None = None
    retry_after: float = 0.0


@dataclass(frozen=True, slots=True)
class Exhausted:
    """A category that would refuse one more unit, announced even on successful answers."""

    category: str
    reason: str
    retry_after: float


@dataclass(frozen=True, slots=True)
class Decision:
    organization_id: str
    items: list[ItemDecision]
    period_start: int = 0
    period_end: int = 0
    exhausted: list[Exhausted] = field(default_factory=list)
    degraded: bool = False
    """Redis was unreachable: the answer follows the fail policy, not the counters."""
    replayed: bool = False

    @property
    def all_accepted(self) -> bool:
        return all(i.accepted for i in self.items)

    def part(self, start: int, stop: int, exhausted: list[Exhausted] | None = None) -> Decision:
        """The decision on ``items[start:stop]`` alone (one request of a batched script call):
        every other field carried over, ``exhausted`` too unless given. A direct constructor call:
        ``dataclasses.replace`` costs several times more, once per request of a batch."""
        return Decision(
            self.organization_id,
            self.items[start:stop],
            self.period_start,
            self.period_end,
            self.exhausted if exhausted is None else exhausted,
            self.degraded,
            self.replayed,
        )


@dataclass(frozen=True, slots=True)
class Refund:
    organization_id: str
    period_start: int
    refunded: dict[str, int]
    status: str = "ok"
