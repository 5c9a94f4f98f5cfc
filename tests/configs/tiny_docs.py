"""The tiny model on Python's documentation alone: real text on every machine,
prepared in a second, for tests that run the CLI many times."""

from lamda_jax.configs import tiny


def get_config():
  config = tiny.get_config()
  config.name = 'tiny_docs'
  config.data.sources = {'python_docs': {'kind': 'documents', 'weight': 1.0,
                                         'paths': ('embedded:python_docs',), 'tfds_name': '',
                                         'text_field': 'text'}}
  config.data.eval_fraction = 0.1
  return config
