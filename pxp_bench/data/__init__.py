"""Datasets and the protocol's draws: `digits` (the embedded set), `imagefolder` (ImageNet and any image
folder), `tensors` (data held as one tensor), `builtin` (their plugin registration), `protocol` (PROTOCOL
section 1's class, reference, tuning and evaluation draws) and `loading` (batches, and sample sets decoded
once into memory)."""
