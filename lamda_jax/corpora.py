"""Real text that installs offline, for the embedded default.

Python's bundled reference documentation (`pydoc_data.topics`) is on every
machine with Python: code-related prose, LaMDA's "code-related sites" share.
"""

import pydoc_data.topics


def python_docs() -> dict[str, str]:
  """Topic name -> text of Python's reference documentation, in a stable order.

  Some topics share one text ('if' and 'else'); each text is kept once, under
  its first name, so no document can land in both the train and eval splits.
  """
  docs, seen = {}, set()
  for name in sorted(pydoc_data.topics.topics):
    text = pydoc_data.topics.topics[name]
    if text not in seen:
      docs[name] = text
      seen.add(text)
  return docs
