from __future__ import annotations

from advanced_alchemy.repository import SQLAlchemyAsyncRepository

from app.db.models import ServiceToken


class ServiceTokenRepository(SQLAlchemyAsyncRepository[ServiceToken]):
    model_type = ServiceToken
