"""Perturbed images: common corruptions (imagecorruptions) and L∞ attacks (torchattacks,
PGD on detector losses)."""
