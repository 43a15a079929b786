"""Marketplace add-ons: a provider-neutral core (:mod:`.services`) and the Heroku adapter
(:mod:`.heroku`, partner API v3)."""
