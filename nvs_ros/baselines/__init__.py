"""Other estimators, run on the same images and scored through the same path."""
