"""Database: declarative base with a naming convention (advanced-alchemy's), models, sessions."""
