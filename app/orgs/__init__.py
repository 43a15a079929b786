"""Organizations, their API keys and audit trail."""
