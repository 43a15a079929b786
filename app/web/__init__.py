"""The customer-facing billing page (server-rendered, no script): reached through a single-use
billing-session link or marketplace SSO, both ending in the same signed session cookie."""
