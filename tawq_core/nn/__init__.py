"""Quantized layers and what acts on them: swapping layers by policy (`quantization`), layer roles,
calibration, the time layout of spiking inputs, and dense packing of low-bit codes with its checks.

Importing this package imports none of its modules (and no torch): each is imported where it is used."""
