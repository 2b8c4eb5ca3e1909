"""Hyperparameter optimisation of attribution methods for pruning (PROTOCOL section 5)."""
