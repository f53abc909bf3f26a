import pytest
from inventory.cart import Cart


def test_total_without_discounts():
    cart = Cart()
    cart.add("apple", 0.5, 4)
    cart.add("pear", 0.75, 2)
    assert cart.total() == 3.5


def test_total_with_discount():
    cart = Cart()
    cart.add("book", 20.0, 5, discount_percent=10)
    assert cart.total() == 90.0


def test_quantity_must_be_positive():
    with pytest.raises(ValueError):
        Cart().add("apple", 0.5, 0)
