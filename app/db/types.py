"""Column types shared by the models."""

from sqlalchemy import JSON
from sqlalchemy.dialects import postgresql

JSONDict = JSON().with_variant(postgresql.JSONB(), "postgresql")
"""JSON everywhere, JSONB on PostgreSQL."""
