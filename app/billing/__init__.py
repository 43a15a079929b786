"""Stripe billing: catalog sync, checkout, portal, webhooks, subscription sync, dunning, overage."""
