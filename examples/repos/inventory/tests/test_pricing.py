import pytest
from inventory.pricing import apply_discount, line_price


def test_apply_discount():
    assert apply_discount(200, 25) == 150


def test_apply_discount_rejects_out_of_range():
    with pytest.raises(ValueError):
        apply_discount(10, 120)


def test_line_price_with_discount():
    assert line_price(20.0, 5, discount_percent=10) == 90.0
