"""The HTTP server under load: requests/s and latency at 1, 4 and 16 concurrent
clients, with and without batching across requests, on the `bench` model.

Loopback only, bounded: each level sends a fixed number of requests. The model
is the `bench` config freshly initialised (the speed of a sample-and-rank call
does not depend on what the weights learnt), with an 8,000-piece tokenizer
trained on Python's documentation (and the vocabulary sized to it); 16 candidates x `--new_tokens`, top-k 40. During the
16-client level a few slow clients trickle their headers in a byte at a time;
every request must still be answered 200, and the process's resident memory
is reported before and after. Then a soak (`--soak_rounds`): the batched
server answers round after round of 4 clients, with the resident memory after
each round, to tell a leak (steady growth) from pools filling up (growth that
stops).

  JAX_PLATFORMS=cpu python -m benchmarks.serve_load
"""

import json
import os
import socket
import tempfile
import threading
import time
import urllib.request

from absl import app, flags
import numpy as np

from benchmarks import machine
from lamda_jax import config as config_lib
from lamda_jax.configs import bench
from lamda_jax.data import corpora
from lamda_jax.data import tokenizer as tokenizer_lib
from lamda_jax.model import decoder
from lamda_jax.serving import decoding, responder, runs, server
from lamda_jax.training import trainer as trainer_lib

_NEW_TOKENS = flags.DEFINE_integer('new_tokens', 32, 'New tokens per candidate.')
_REQUESTS = flags.DEFINE_integer('requests_per_client', 2, 'Requests each client sends.')
_SOAK_ROUNDS = flags.DEFINE_integer('soak_rounds', 20, 'Rounds of the soak (0: none).')
SOAK_CLIENTS = 4
LEVELS = (1, 4, 16)  # concurrent clients
BATCHES = (1, 4)  # serve.max_batch: 1 is no batching across requests
SLOW_CLIENTS = 4
VOCAB = 8000  # Python's documentation holds too few pieces for bench's 32,000 (at most 15,395)
DIALOG = {'context': [{'speaker': 'A', 'text': 'How do I read a file in Python?'}]}


def _resident_mb() -> float:
  with open('/proc/self/status', encoding='utf-8') as f:
    kb = next(int(line.split()[1]) for line in f if line.startswith('VmRSS:'))
  return kb / 1024


def open_bench_run(new_tokens: int) -> runs.Run:
  config = bench.get_config()
  config.model.vocab_size = VOCAB
  config.decode.update(dict(num_candidates=16, top_k=40, max_new_tokens=new_tokens))
  experiment = config_lib.load(config)
  path = os.path.join(tempfile.mkdtemp(), 'tokenizer.model')
  tokenizer = tokenizer_lib.train(list(corpora.python_docs().values()),
                                  experiment.model.vocab_size, path)
  trainer = trainer_lib.set_up(experiment)
  with trainer.activated():
    params = decoding.inference_params(trainer.initial_state().params, experiment.model)
  return runs.Run(experiment, '', params, tokenizer, decoder.for_experiment(experiment),
                  trainer.mesh)


def _post(url: str) -> tuple[int, float]:
  request = urllib.request.Request(url + '/v1/respond', data=json.dumps(DIALOG).encode(),
                                   headers={'Content-Type': 'application/json'})
  start = time.perf_counter()
  try:
    with urllib.request.urlopen(request, timeout=600) as response:
      response.read()
      status = response.status
  except urllib.error.HTTPError as error:
    status = error.code
  return status, time.perf_counter() - start


def _slow_client(port: int, stop: threading.Event):
  """Sends a request's headers one byte at a time until told to stop."""
  head = b'POST /v1/respond HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
  with socket.create_connection(('127.0.0.1', port)) as sock:
    for byte in head:
      if stop.wait(0.5):
        return
      sock.sendall(bytes([byte]))


def load(url: str, port: int, clients: int, per_client: int, slow: int) -> dict:
  results, stop = [], threading.Event()
  trickling = [threading.Thread(target=_slow_client, args=(port, stop), daemon=True)
               for _ in range(slow)]
  for thread in trickling:
    thread.start()

  def client():
    for _ in range(per_client):
      results.append(_post(url))

  threads = [threading.Thread(target=client) for _ in range(clients)]
  start = time.perf_counter()
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  seconds = time.perf_counter() - start
  stop.set()
  latencies = np.array([latency for _, latency in results])
  return {'clients': clients, 'slow_clients': slow, 'requests': len(results),
          'errors': sum(status != 200 for status, _ in results),
          'requests_per_second': len(results) / seconds,
          'p50_s': float(np.percentile(latencies, 50)),
          'p99_s': float(np.percentile(latencies, 99))}


def main(argv):
  del argv
  run = open_bench_run(_NEW_TOKENS.value)
  cpu = machine.describe_cpu()
  rows = []
  for max_batch in BATCHES:
    http, url = _serve(run, max_batch)
    memory_before = _resident_mb()
    for clients in LEVELS:
      row = load(url, http.effective_port, clients, _REQUESTS.value,
                 SLOW_CLIENTS if clients == max(LEVELS) else 0)
      row.update(max_batch=max_batch, new_tokens=_NEW_TOKENS.value,
                 resident_mb_before=round(memory_before), resident_mb_after=round(_resident_mb()),
                 cpu=cpu)
      rows.append(row)
      print(json.dumps(row), flush=True)
    http.close()
  print('| max_batch | clients | slow clients | requests | errors | requests/s | p50 s | p99 s |'
        ' resident MB before / after |')
  print('|---|---|---|---|---|---|---|---|---|')
  for r in rows:
    print(f'| {r["max_batch"]} | {r["clients"]} | {r["slow_clients"]} | {r["requests"]} | '
          f'{r["errors"]} | {r["requests_per_second"]:.2f} | {r["p50_s"]:.2f} | '
          f'{r["p99_s"]:.2f} | {r["resident_mb_before"]} / {r["resident_mb_after"]} |')
  if _SOAK_ROUNDS.value:
    soak(run, _SOAK_ROUNDS.value, cpu)


def _serve(run: runs.Run, max_batch: int):
  """A started server over `run` and its URL, its batch shape compiled."""
  cfg = config_lib.ServeConfig(port=0, max_batch=max_batch, threads=32, max_connections=64,
                               max_queue=64)
  http, _ = server.create_server(responder.Responder(run.experiment, run).respond, cfg)
  threading.Thread(target=http.run, daemon=True).start()
  url = f'http://127.0.0.1:{http.effective_port}'
  _post(url)
  return http, url


def soak(run: runs.Run, rounds: int, cpu: dict):
  """Resident MB after each round of SOAK_CLIENTS clients on the batched server."""
  http, url = _serve(run, max(BATCHES))
  memory, errors, requests = [round(_resident_mb())], 0, 0
  for _ in range(rounds):
    row = load(url, http.effective_port, SOAK_CLIENTS, _REQUESTS.value, 0)
    errors, requests = errors + row['errors'], requests + row['requests']
    memory.append(round(_resident_mb()))
  http.close()
  print(json.dumps({'soak_rounds': rounds, 'requests': requests, 'errors': errors,
                    'resident_mb': memory, 'cpu': cpu}), flush=True)


if __name__ == '__main__':
  app.run(main)
