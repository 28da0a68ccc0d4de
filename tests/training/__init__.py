"""Tests of the training data layer: reading, synthesis, conversion, weighting, matrices, splits."""
