"""What a person sees while a mode runs.

The console shows one progress line per long phase, the results, this
package's own messages and the warnings that matter. The libraries' narration
(TFDS's preparing and shuffling, Orbax's checkpoint notices, absl INFO) goes
to the run's log file, `<workdir>/log.txt`, unless `--verbose`, which shows
everything as the libraries print it. Errors always reach the console.
"""

import contextlib
import logging
import os
import sys
import threading

from absl import logging as absl_logging
import jax
import tqdm

LOG_FILE = 'log.txt'
_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
# Libraries whose INFO and WARNING lines narrate routine work.
_NARRATORS = ('/orbax/', '/tensorflow_datasets/', '/etils/', '/array_record/', '/absl/')
_quiet = {'log': None}  # the log file's path while quiet; None when verbose or not set up


class _LazyFileHandler(logging.FileHandler):
  """Creates the log file (and its folder) only when something is written."""

  def _open(self):
    os.makedirs(os.path.dirname(self.baseFilename), exist_ok=True)
    return super()._open()


def _for_the_console(record: logging.LogRecord) -> bool:
  if record.levelno >= logging.ERROR or record.pathname.startswith(_PACKAGE):
    return True
  return record.levelno >= logging.WARNING and not any(
      narrator in record.pathname for narrator in _NARRATORS)


def setup(workdir: str, verbose: bool):
  """Routes logging for a mode run: quiet (the default) or verbose."""
  if verbose:
    return
  path = os.path.join(os.path.abspath(workdir), LOG_FILE)
  log = _LazyFileHandler(path, delay=True)
  log.setFormatter(absl_logging.PythonFormatter())
  logging.getLogger().addHandler(log)
  absl_logging.use_absl_handler()  # absl.app does this; a notebook kernel has not
  console = absl_logging.get_absl_handler()
  console.addFilter(_for_the_console)
  console.setFormatter(logging.Formatter('%(levelname)s %(asctime)s %(message)s', '%H:%M:%S'))
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  tfds.disable_progress_bar()
  _quiet['log'] = path


@contextlib.contextmanager
def library_output():
  """What a library prints while it works: to the log file when quiet,
  otherwise to stderr (stdout is for results)."""
  path = _quiet['log']
  if path is None:
    with contextlib.redirect_stdout(sys.stderr):
      yield
    return
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'a', encoding='utf-8') as stream, contextlib.redirect_stdout(stream), \
      contextlib.redirect_stderr(stream):
    yield


@contextlib.contextmanager
def phase(description: str):
  """A line that counts the seconds of a long phase and says when it is done
  (on the first host only: the others do the same work)."""
  if jax.process_index() != 0:
    yield
    return
  bar = tqdm.tqdm(desc=description, bar_format='{desc}: {elapsed}', file=sys.stderr,
                  mininterval=1.0)
  done = threading.Event()

  def tick():
    while not done.wait(1.0):
      bar.refresh()

  ticker = threading.Thread(target=tick, daemon=True)
  ticker.start()
  try:
    yield
  finally:
    done.set()
    ticker.join()
    bar.set_description_str(f'{description}: done', refresh=False)
    bar.close()
