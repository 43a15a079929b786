"""Entitlements: feature gates, numeric limits (members, retention), seats and trials."""
