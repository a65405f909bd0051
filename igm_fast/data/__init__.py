"""Skeleton datasets: raw-format readers (ntu, pku, ucla), the built-in synth generator,
the on-disk layout every loader reads (layout), and the torch Dataset over it (dataset)."""
