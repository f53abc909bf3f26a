import pytest
from stats import mean, median


def test_mean():
    assert mean([1, 2, 3]) == 2


def test_mean_single_value():
    assert mean([5]) == 5


def test_mean_empty():
    with pytest.raises(ValueError):
        mean([])


def test_median_odd_and_even():
    assert median([3, 1, 2]) == 2
    assert median([4, 1, 3, 2]) == 2.5
