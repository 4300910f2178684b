"""Fixtures for the pipeline's unit tests (the stand-in model is ``tests.helpers.DiscModel``)."""
