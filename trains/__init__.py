"""The train format every role shares: manifest, keys, signatures, sealed state, receipts.

This ``__init__`` imports nothing on purpose: ``trains.runtime`` is copied into the
container image, where only the standard library, numpy and pandas exist.
"""
