"""A shopping cart."""

from dataclasses import dataclass, field

from inventory.money import round_money
from inventory.pricing import apply_discount, line_price


@dataclass
class Line:
    sku: str
    unit_price: float
    quantity: int
    discount_percent: float = 0


@dataclass
class Cart:
    lines: list = field(default_factory=list)

    def add(self, sku, unit_price, quantity=1, discount_percent=0):
        if quantity <= 0:
            raise ValueError("quantity must be positive")
        self.lines.append(Line(sku, unit_price, quantity, discount_percent))

    def total(self):
        total = 0.0
        for line in self.lines:
            price = line_price(line.unit_price, line.quantity, line.discount_percent)
            total += apply_discount(price, line.discount_percent)
        return round_money(total)
