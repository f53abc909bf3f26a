"""Session tokens for the internal API."""
