"""A tiny shop inventory: products, carts and prices."""
