"""Reusable test fixtures (real tools, no mocks)."""
