"""Shared code for face landmark training, evaluation and inference.

Landmark convention used everywhere in this package: float32 numpy arrays of
shape ``(N, 2)`` holding ``(x, y)`` in pixels of the current image, 0-based,
with integer coordinates at pixel centres. Image sizes are ``(height, width)``.
Boxes are ``(x0, y0, x1, y1)`` floats in the same pixel frame.
"""
