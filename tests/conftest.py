import os

# Tests run on the CPU; without this JAX first probes for a TPU runtime.
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# Eight simulated devices, so that meshes like (2, 2, 2) exist on one CPU.
os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=8').strip()
