"""Prices of cart lines."""

from inventory.money import round_money


def apply_discount(amount, percent):
    """`amount` reduced by `percent` (0-100)."""
    if not 0 <= percent <= 100:
        raise ValueError(f"discount must be between 0 and 100, got {percent}")
    return amount * (100 - percent) / 100


def line_price(unit_price, quantity, discount_percent=0):
    """Price of `quantity` units, with the product's discount applied."""
    return round_money(apply_discount(unit_price * quantity, discount_percent))
