"""Measuring a network: latency, energy (measured by a backend's meter or estimated from the presets in
``energy_models.toml``), synaptic operation counts, the hardware description and the `Measurement`
record backends fill.

Importing this package imports none of its modules: energy and op counting import torch."""
