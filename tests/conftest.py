import os

# Tests run on the CPU; without this JAX first probes for a TPU runtime.
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
