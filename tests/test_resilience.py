"""The train loop as a process: killed, preempted, corrupted, re-meshed, multi-host.

Each test drives `python -m lamda_jax.main --mode train` in subprocesses and
compares the per-step losses it logs with an uninterrupted run.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = [
    '--config', 'tests/configs/tiny_docs.py', '--mode', 'train',
    '--config.model.num_layers=2', '--config.model.d_model=64', '--config.model.num_heads=4',
    '--config.model.head_dim=16', '--config.model.d_ff=128', '--config.model.vocab_size=512',
    '--config.train.seq_len=64', '--config.train.batch_size=8', '--config.train.log_every=1',
    '--config.train.eval_every=0', '--config.train.checkpoint_every=4',
    '--config.train.warmup_steps=2', '--config.train.peak_flops_per_device=1e9',
]


def _env(devices: int):
  return {**os.environ, 'JAX_PLATFORMS': 'cpu',
          'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}'}


def _command(workdir, steps, *extra):
  return [sys.executable, '-m', 'lamda_jax.main', *TRAIN, f'--config.train.steps={steps}',
          '--workdir', str(workdir), *extra]


def _train(workdir, steps, *extra, devices=1):
  result = subprocess.run(_command(workdir, steps, *extra), cwd=ROOT, env=_env(devices),
                          capture_output=True, text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


def _losses(workdir) -> dict[int, float]:
  with open(os.path.join(workdir, 'metrics.jsonl'), encoding='utf-8') as f:
    records = [json.loads(line) for line in f]
  losses = {r['step']: r['loss'] for r in records if 'loss' in r}
  assert len(losses) == sum('loss' in r for r in records), 'a step was logged twice'
  return losses


def _wait_for_step(process, workdir, step, timeout=300):
  path = os.path.join(workdir, 'metrics.jsonl')
  deadline = time.time() + timeout
  while time.time() < deadline:
    assert process.poll() is None, 'training ended before it could be interrupted'
    if os.path.exists(path) and len(_losses_partial(path)) >= step:
      return
    time.sleep(0.2)
  raise TimeoutError(f'step {step} not reached')


def _losses_partial(path):
  with open(path, encoding='utf-8') as f:
    return [line for line in f if '"loss"' in line and line.endswith('\n')]


def _spans(text: str) -> set[int]:
  """'0,2,4-6' -> {0, 2, 4, 5, 6}."""
  numbers = set()
  for span in text.split(','):
    first, _, last = span.partition('-')
    numbers.update(range(int(first), int(last or first) + 1))
  return numbers


def _checkpoint_steps(workdir):
  return sorted(int(name) for name in os.listdir(os.path.join(workdir, 'checkpoints'))
                if name.isdigit())


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('uninterrupted')
  _train(workdir, 24)
  return workdir, _losses(workdir)


def test_sigkill_and_resume_reproduces_every_loss_bit_for_bit(tmp_path, uninterrupted):
  _, want = uninterrupted
  process = subprocess.Popen(_command(tmp_path, 24), cwd=ROOT, env=_env(1),  # pylint: disable=consider-using-with
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  _wait_for_step(process, tmp_path, 10)
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert _checkpoint_steps(tmp_path)[-1] < 24
  summary, _ = _train(tmp_path, 24)
  assert 0 < summary['start_step'] < 24
  assert _losses(tmp_path) == want  # every step, exactly


def test_corrupted_latest_checkpoint_is_skipped_for_the_previous(tmp_path, uninterrupted):
  source, want = uninterrupted
  workdir = tmp_path / 'run'
  shutil.copytree(source, workdir)
  assert _checkpoint_steps(workdir) == [16, 20, 24]
  for folder, _, files in os.walk(workdir / 'checkpoints' / '24'):
    for name in files:
      open(os.path.join(folder, name), 'wb').close()  # pylint: disable=consider-using-with
  summary, stderr = _train(workdir, 24)
  assert 'checkpoints/24 is unreadable' in stderr
  assert summary['start_step'] == 20
  assert _losses(workdir) == want
  assert _checkpoint_steps(workdir) == [16, 20, 24]  # 24 written anew
  assert (workdir / 'checkpoints' / '24.unreadable').is_dir()  # the bad one kept aside


def test_sigterm_checkpoints_the_current_step_and_exits_cleanly(tmp_path):
  process = subprocess.Popen(  # pylint: disable=consider-using-with
      _command(tmp_path, 100000, '--config.train.checkpoint_every=100000'), cwd=ROOT,
      env=_env(1), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  _wait_for_step(process, tmp_path, 5)
  process.send_signal(signal.SIGTERM)
  stdout, stderr = process.communicate(timeout=120)
  assert process.returncode == 0, stderr[-2000:]
  summary = json.loads(stdout.strip().splitlines()[-1])
  assert summary['preempted'] and summary['final_step'] >= 5
  assert _checkpoint_steps(tmp_path) == [summary['final_step']]
  resumed, _ = _train(tmp_path, summary['final_step'] + 2)
  assert resumed['start_step'] == summary['final_step']


def test_restore_onto_a_different_mesh(tmp_path, uninterrupted):
  _, want = uninterrupted
  fsdp = ('--config.mesh.data=1', '--config.mesh.fsdp=-1')
  _train(tmp_path, 8, *fsdp, devices=8)  # saved as 8 FSDP shards
  summary, _ = _train(tmp_path, 12, *fsdp, devices=4)  # resumed on 4 devices
  assert summary['start_step'] == 8
  summary, _ = _train(tmp_path, 16, devices=1)  # and on one
  assert summary['start_step'] == 12
  got = _losses(tmp_path)
  assert sorted(got) == list(range(1, 17))
  for step in range(1, 17):  # other reduction orders: equal to float tolerance
    assert got[step] == pytest.approx(want[step], rel=1e-4), step


def test_two_processes_with_jax_distributed_match_one(tmp_path):
  """Two hosts, each reading one of two streams: each opens only its half of the
  shards, and the losses equal one process's on the same two streams."""
  streams = ['--config.data.streams=2', '--config.data.records_per_shard=32']
  single = tmp_path / 'single'
  _train(single, 8, *streams, devices=2)
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  multi = tmp_path / 'multi'
  distributed = ['--config.distributed.enabled=True', '--config.distributed.num_processes=2',
                 f'--config.distributed.coordinator_address=127.0.0.1:{port}']
  processes = [subprocess.Popen(  # pylint: disable=consider-using-with
      _command(multi, 8, *streams, *distributed, f'--config.distributed.process_id={i}'),
      cwd=ROOT,
      env=_env(1), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (0, 1)]
  outputs = [p.communicate(timeout=600) for p in processes]
  for process, (_, stderr) in zip(processes, outputs):
    assert process.returncode == 0, stderr[-2000:]
  assert 'Mesh {\'data\': 2, \'fsdp\': 1, \'tensor\': 1}; 2 devices on 2 hosts.' in outputs[0][1]
  assert '"mode": "train"' in outputs[0][0]
  assert '"mode": "train"' not in outputs[1][0]  # only process 0 reports
  read = [re.search(r"Process (\d) reads streams (\d)\.\.(\d) of 2: shards "
                    r"\{'python_docs': '([-,\d]+)'\}", stderr) for _, stderr in outputs]
  assert [m.group(1, 2, 3) for m in read] == [('0', '0', '0'), ('1', '1', '1')]
  shards = [_spans(m.group(4)) for m in read]
  assert shards[0] and shards[1] and not shards[0] & shards[1]  # disjoint halves
  got, want = _losses(multi), _losses(single)
  assert sorted(got) == list(range(1, 9))
  for step in want:
    assert got[step] == pytest.approx(want[step], rel=1e-6)
