"""Prelabel: auto-annotation of image datasets with OpenVINO, Dramatiq, Redis and S3."""

__version__ = "0.1.0"
