"""Errors the core raises for requests it cannot answer as asked."""


class UnknownItem(ValueError):
    """An item id the model does not know (viewed item, cart, exclude or similar-to)."""

    def __init__(self, item_id: str, field: str = "item_id"):
        super().__init__(f"unknown item {item_id!r}")
        self.item_id = item_id
        self.field = field
