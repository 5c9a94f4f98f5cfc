"""Real text that installs offline, for the embedded default.

Python's bundled reference documentation (`pydoc_data.topics`) is on every
machine with Python: code-related prose, LaMDA's "code-related sites" share.
"""

import pydoc_data.topics


def python_docs() -> dict[str, str]:
  """Topic name -> text of Python's reference documentation, in a stable order."""
  return {name: pydoc_data.topics.topics[name] for name in sorted(pydoc_data.topics.topics)}
