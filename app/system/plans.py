"""``GET /v1/plans``: the catalog as the API shows it (app/plans stays pure)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, get
from litestar.datastructures import State


class PlanController(Controller):
    path = "/v1/plans"
    tags = ["plans"]

    @get("/", summary="The plan catalog (current versions, cheapest first)")
    async def list_plans(self, state: State) -> dict[str, Any]:
        catalog = state.ctx.catalog
        plans = [catalog.current(n) for n in catalog.names()]
        return {
            "default_plan": catalog.default_plan,
            "plans": [p.as_dict() for p in plans],
            "versions": {n: [v.version for v in catalog.plans[n]] for n in catalog.names()},
        }
