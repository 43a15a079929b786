"""Outbound usage notifications: webhook endpoints, once-only events, signed deliveries."""
