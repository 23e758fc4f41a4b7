"""tawq's built-in hardware backends (import name ``tawq_backends``)."""
