"""The interfaces plugins implement (backend, dataset, model, neuron, quantizer), the hook specifications
and registry through which tawq finds them, the errors they raise and the boundary that names a failing
plugin. Plugin authors import the public names from `tawq_core` or `tawq_core.plugin`, not from here.

Importing this package imports none of its modules: a registry look-up stays cheap (#18.5)."""
