"""Lambda entry points: a few lines each; the work lives in ``ingest``."""
