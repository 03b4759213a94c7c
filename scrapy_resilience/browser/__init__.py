"""Browsers: whether a crawl has scrapy-playwright (``detect``) and the only code touching its internals (``bridge``).

``bridge`` imports Playwright, so nothing imports it unless ``detect`` says the crawl uses it.
"""
