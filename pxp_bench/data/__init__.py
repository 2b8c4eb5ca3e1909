"""Dataset plugins and the protocol's class, reference, tuning and evaluation draws."""
