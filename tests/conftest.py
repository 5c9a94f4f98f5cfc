import os

# Tests run on the CPU; without this JAX first probes for a TPU runtime.
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# Eight simulated devices, so that meshes like (2, 2, 2) exist on one CPU.
os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=8').strip()


import dataclasses  # pylint: disable=wrong-import-position

import pytest  # pylint: disable=wrong-import-position


@pytest.fixture(scope='session')
def a_run(tmp_path_factory):
  """(experiment, workdir) of a tiny model with its tokenizer and a checkpoint,
  as a fine-tuned run leaves them, for the modes that read a run."""
  from lamda_jax import config as config_lib  # pylint: disable=import-outside-toplevel
  from lamda_jax.training import loop  # pylint: disable=import-outside-toplevel
  from tests.configs import tiny_docs  # pylint: disable=import-outside-toplevel
  workdir = tmp_path_factory.mktemp('run')
  experiment = config_lib.load(tiny_docs.get_config())
  experiment = dataclasses.replace(experiment, train=dataclasses.replace(
      experiment.train, steps=1, checkpoint_every=1, eval_every=0, seq_len=64))
  loop.run(experiment, str(workdir))
  return experiment, str(workdir)
