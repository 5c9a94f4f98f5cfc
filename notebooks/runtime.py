"""Every notebook's first step: a runtime that imports lamda_jax.

On Colab (the checkout cloned to COLAB_CHECKOUT by the notebook's first
cell): install it with the locked versions plus the jax extra of the runtime's
accelerator, so that jax and its TPU or CUDA plugin move together (a bare
`pip install -e .` could move jax past the build Colab ships), then pick the
editable install up without restarting the kernel. In a local Jupyter started
in notebooks/ (with the project's .venv as kernel): move to the repository
root, so that runs/ lands next to configs/.
"""

import os
import shutil
import site
import subprocess
import sys
import sysconfig

COLAB_CHECKOUT = '/content/lamda_jax'


def jax_build(exists=os.path.exists, which=shutil.which, environ=os.environ) -> str:
  """The pip requirement for jax on this runtime: with its TPU or CUDA plugin when it has one."""
  if exists('/dev/accel0') or 'COLAB_TPU_ADDR' in environ:
    return 'jax[tpu]'
  if which('nvidia-smi'):
    return 'jax[cuda12]'
  return 'jax'


def prepare() -> str:
  """Installs or finds the project; returns the repository root, now the working directory."""
  if 'google.colab' in sys.modules:
    os.chdir(COLAB_CHECKOUT)
    subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '-c', 'requirements.lock',
                    '-e', '.', jax_build()], check=True)
    site.addsitedir(sysconfig.get_paths()['purelib'])  # runs the editable install's .pth
  elif os.path.basename(os.getcwd()) == 'notebooks':
    os.chdir('..')
  return os.getcwd()
