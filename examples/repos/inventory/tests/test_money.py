from inventory.money import format_money, round_money


def test_round_money_half_up():
    assert round_money(2.675) == 2.68


def test_format_money():
    assert format_money(3) == "3.00"
