"""Bank accounts with event sourcing: audit trail, transfers, "balance as of", upcasting.

Run it: ``uv run python -m examples.bank [--store-url URL]``.
"""
