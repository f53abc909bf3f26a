"""Small repos for verification tests, as {path: text}."""

CALC = {
    "conftest.py": "",
    "calc.py": "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n\n\ndef neg(a):\n    return a\n",
    "tests/test_calc.py": (
        "from calc import add, mul, neg\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\n"
        "def test_mul():\n    assert mul(2, 3) == 6\n\n\ndef test_neg():\n    assert neg(2) == -2\n"
    ),
}
FIXED_ADD = CALC["calc.py"].replace("return a - b", "return a + b")
