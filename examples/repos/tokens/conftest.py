# Makes the repo root importable for the tests.
