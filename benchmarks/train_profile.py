"""Where a train step's time goes: the real step profiled per XLA thunk, each
thunk named by the model operation it came from, summed by kind.

  python -m benchmarks.train_profile --config=bench --precision=bfloat16

Runs `trainer.set_up`'s update as benchmarks/train_throughput does, traces
`--steps` steps with `jax.profiler`, reads the trace back
(`jax.profiler.ProfileData`), and maps each thunk to its HLO instruction's
`op_name` in the compiled step. Thunks on the two cores may overlap, so the
kinds are shares of the summed thunk time, beside the wall time per step, how
long each kind ran with no other thunk beside it, and how long n thunks were
in flight (`concurrency`). Prints one JSON line and a table.
"""

import collections
import dataclasses
import importlib
import json
import pathlib
import re
import tempfile
import time

from absl import app, flags
import jax

from benchmarks import machine, synthetic
from lamda_jax import config as config_lib
from lamda_jax.training import trainer as trainer_lib

FLAGS = flags.FLAGS


def _define_flags():
  """Defined only when run as a script: the suite imports this module beside
  others that define --config."""
  flags.DEFINE_string('config', 'bench', 'A config in lamda_jax.configs.')
  flags.DEFINE_string('precision', 'bfloat16', 'Compute dtype.')
  flags.DEFINE_integer('steps', 2, 'Profiled steps (after 2 warm-up steps).')
  flags.DEFINE_integer('top', 12, 'Slowest single thunks to list.')

# Output projection equations, untied ('ev') and tied ('ve'), and their gradients.
LOGITS = ('ble,ev->blv', 'blv,ev->ble', 'ble,blv->ev', 'ble,ve->blv', 'blv,ve->ble',
          'blv,ble->ve')
ATTENTION_DOTS = ('bhqd,bhkd->bhqk', 'bhqk,bhkd->bhqd')


def kind_of(op_name: str) -> str:
  """The kind of work an HLO `op_name` (JAX's name stack) belongs to."""
  if not op_name:
    return 'unnamed: copies and fusions XLA made'
  if 'relpos_bias' in op_name:
    return 'relative position bias'
  if 'dot_general' in op_name:
    if any(equation in op_name for equation in LOGITS):
      return 'output projection (vocab logits) and its gradients'
    if any(equation in op_name for equation in ATTENTION_DOTS):  # their gradients keep the name
      return 'attention: batched dots over positions'
    return 'projections (q, k, v, out, MLP) and their gradients'
  for marker, kind in (('/attention/', 'attention: softmax, bias, masks, layout'),
                       ('/mlp/', 'MLP: activations'), ('norm', 'norms')):
    if marker in op_name:
      return kind
  if 'Decoder' in op_name:
    return 'model: embedding, residuals, layout'
  if 'jvp' in op_name or 'transpose' in op_name:
    return 'loss and metrics'
  return 'optimizer, clipping, the rest'


def op_names(hlo_text: str) -> dict[str, str]:
  """HLO instruction name -> its op_name metadata ('' for what XLA made
  itself, such as layout copies), from a compiled module's text. A fusion
  that holds a dot is named by the dot (XLA:CPU fuses attention's score dot
  with the softmax's max and exp, named by the last of them)."""
  dots, computation = {}, None  # computation name -> op_name of a dot in it
  for line in hlo_text.splitlines():
    header = re.match(r'^(?:ENTRY )?%(\S+) .*\{$', line)
    if header:
      computation = header.group(1)
    dot = re.search(r' dot\(.*?op_name="([^"]*)"', line)
    if dot and computation:
      dots.setdefault(computation, dot.group(1))
  names = {}
  for line in hlo_text.splitlines():
    found = re.search(r'^\s*(?:ROOT )?%(\S+) = ', line)
    if found:
      op_name = re.search(r'op_name="([^"]*)"', line)
      called = re.search(r'calls=%([^,\s]+)', line)
      names[found.group(1)] = ((called and dots.get(called.group(1))) or
                               (op_name.group(1) if op_name else ''))
  return names


def thunk_events(trace_dir: str, names: dict[str, str]) -> list[tuple[str, int, int]]:
  """(HLO instruction, start ns, end ns) of each thunk that ran in the trace."""
  [path] = [str(p) for p in pathlib.Path(trace_dir).rglob('*.xplane.pb')]
  return [(event.name, event.start_ns, event.start_ns + event.duration_ns)
          for plane in jax.profiler.ProfileData.from_file(path).planes
          for line in plane.lines for event in line.events if event.name in names]


def concurrency(events) -> tuple[dict[int, float], dict[str, float]]:
  """(seconds during which exactly n thunks ran, for each n; seconds each
  thunk ran alone), from the first thunk's start to the last one's end. A dot
  alone still runs on every core (YNNPACK splits it), other thunks alone may
  leave cores idle; thunks side by side share the cores, so their summed times
  over-count the step's."""
  edges = sorted([(start, 1, name) for name, start, _ in events] +
                 [(end, -1, name) for name, _, end in events])
  in_flight, alone, running = collections.Counter(), collections.Counter(), collections.Counter()
  for (time_ns, change, name), (next_ns, _, _) in zip(edges, edges[1:]):
    running[name] += change
    running = +running  # drops the thunks that ended
    seconds = (next_ns - time_ns) / 1e9
    in_flight[sum(running.values())] += seconds
    if len(running) == 1:
      alone[next(iter(running))] += seconds
  return dict(sorted(in_flight.items())), dict(alone)


def profile(experiment, steps: int) -> dict:
  trainer = trainer_lib.set_up(experiment)
  with trainer.activated():
    state = trainer.initial_state()
    batch = jax.device_put(synthetic.full_batch(experiment), trainer.batch_sharding)
    for _ in range(2):
      state, step_metrics = trainer.update(state, batch)
    jax.block_until_ready(step_metrics)
    names = op_names(trainer.update.lower(state, batch).compile().as_text())
    with tempfile.TemporaryDirectory() as trace_dir:
      start = time.perf_counter()
      with jax.profiler.trace(trace_dir):
        for _ in range(steps):
          state, step_metrics = trainer.update(state, batch)
        jax.block_until_ready(step_metrics)
      wall = (time.perf_counter() - start) / steps
      events = thunk_events(trace_dir, names)
  times = collections.Counter()
  for name, start, end in events:
    times[name] += end - start
  by_kind = collections.Counter()
  for name, nanoseconds in times.items():
    by_kind[kind_of(names[name])] += nanoseconds / steps
  total = sum(by_kind.values())
  slowest = sorted(times.items(), key=lambda item: -item[1])
  in_flight, alone = concurrency(events)
  alone_by_kind = collections.Counter()
  for name, seconds in alone.items():
    alone_by_kind[kind_of(names[name])] += seconds / steps
  return {'wall_seconds_per_step': wall, 'thunk_seconds_per_step': total / 1e9,
          'seconds_per_step_with_n_thunks_in_flight': {
              n: seconds / steps for n, seconds in in_flight.items()},
          'by_kind': {kind: {'seconds': t / 1e9, 'share': t / total,
                             'seconds_alone': alone_by_kind[kind]}
                      for kind, t in by_kind.most_common()},
          'slowest': [{'thunk': name, 'seconds': t / steps / 1e9, 'op_name': names[name]}
                      for name, t in slowest]}


def main(argv):
  del argv
  experiment = config_lib.load(
      importlib.import_module(f'lamda_jax.configs.{FLAGS.config}').get_config())
  experiment = dataclasses.replace(
      experiment, model=dataclasses.replace(experiment.model, dtype=FLAGS.precision),
      train=dataclasses.replace(experiment.train, optimizer='adamw', warmup_steps=0),
      data=dataclasses.replace(experiment.data, streams=1))
  result = profile(experiment, FLAGS.steps)
  result['slowest'] = result['slowest'][:FLAGS.top]
  print(json.dumps({'system': f'jax_{jax.__version__}', 'cpu': machine.describe_cpu(),
                    'host_memory': machine.describe_host_memory(),
                    'config': experiment.name, 'precision': FLAGS.precision, **result}))
  print(f"\nwall {result['wall_seconds_per_step']:.3f} s per step; "
        f"thunks {result['thunk_seconds_per_step']:.3f} s (both cores)")
  print('thunks in flight: ' + ', '.join(
      f'{n}: {seconds:.3f} s' for n, seconds in
      result['seconds_per_step_with_n_thunks_in_flight'].items()))
  for kind, entry in result['by_kind'].items():
    print(f"{entry['seconds'] * 1e3:9.1f} ms  {entry['share']:6.1%}  "
          f"{entry['seconds_alone'] * 1e3:7.1f} ms alone  {kind}")
  print('\nslowest thunks:')
  for entry in result['slowest']:
    print(f"{entry['seconds'] * 1e3:9.1f} ms  {entry['thunk']:28s} {entry['op_name'][-80:]}")


if __name__ == '__main__':
  _define_flags()
  app.run(main)
