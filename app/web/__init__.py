"""The customer-facing pages (server-rendered). For now an interim billing page reached through
marketplace SSO; the billing-page issue replaces it."""
