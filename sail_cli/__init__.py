"""The ``sail`` command line: run the SAIL flow, build the embedded world, inspect configs."""
