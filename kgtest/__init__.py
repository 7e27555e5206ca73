"""kgtest: a synthetic testbed for what machine unlearning really removes."""
__version__ = "0.1.0"
