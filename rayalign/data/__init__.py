"""Datasets in the formats users already have: reading, validation, encoding, batching."""
