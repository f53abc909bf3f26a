"""Money helpers: amounts are floats in the shop's currency, shown with two decimals."""


def round_money(amount):
    """Round to cents, halves away from zero."""
    return round(amount + (0.0000001 if amount >= 0 else -0.0000001), 2)


def format_money(amount):
    return f"{round_money(amount):.2f}"
