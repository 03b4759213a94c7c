"""The example Scrapy project: crawls the local demo shop with scrapy-resilience enabled."""
