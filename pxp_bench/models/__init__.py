"""Architecture plugins: the embedded digits zoo (and, later, torchvision / timm models)."""
