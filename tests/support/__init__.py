"""Helpers shared by the tests: trace generation (tracegen), the bad-input corpus, a fake model endpoint."""
