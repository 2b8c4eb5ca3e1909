"""Image models: the embedded digits zoo (`architectures`, `zoo`, its `checkpoints` and reproducible
`training`), torchvision and timm classifiers with pretrained, random or local weights (`pretrained`), and
their plugin registration (`builtin`)."""
