"""tawq's built-in plugins (import name ``tawq_plugins``), registered through the ``tawq`` entry points."""
