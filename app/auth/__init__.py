"""Who is calling: admin / ingest service tokens, org API keys."""
