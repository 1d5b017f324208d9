"""Datasets, image folders, bags and the output folder format."""
