"""The data model: entities (attrs only), their validation rules, their lifecycles and the one converter.

Nothing here imports Scrapy or any other part of the package but ``exceptions``:
data flows from here to the store and the components, never back.
"""
