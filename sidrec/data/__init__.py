"""Datasets: the four tables every stage reads, and one reader per source."""
