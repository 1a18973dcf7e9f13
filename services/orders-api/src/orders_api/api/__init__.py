"""HTTP for orders."""
