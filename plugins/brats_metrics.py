"""BraTS metrics (being written)."""
