"""Serving predictions: the served-model object, decoding uploads, visitors' models, users' corrections."""
