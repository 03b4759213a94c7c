"""``scrapy resilience`` / ``python -m scrapy_resilience``: job views, their tables, the supervisor."""
