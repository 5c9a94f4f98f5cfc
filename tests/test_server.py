"""The HTTP server under load and hostile input, with a stand-in for the model:
slow clients, a full queue, malformed bodies and SIGTERM."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import openai
import pytest
from werkzeug.test import Client

from lamda_jax.config import ServeConfig
from lamda_jax.serving import server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIALOG = {'context': [{'speaker': 'A', 'text': 'hi'}]}


class Reply:  # what a Decision offers the server
  def __init__(self, reply):
    self.reply = reply

  def to_json(self):
    return {'reply': self.reply}


def echo(dialogs, seeds=None):
  return [Reply(f'{len(turns)} turns') for turns in dialogs]


@pytest.mark.parametrize('body,status,message', [
    ('[' * 20_000 + ']' * 20_000, 400, 'nested deeper than 32'),
    ('{"context": [{"speaker": "A", "text": "a\\u0000b"}]}', 400,
     r'context\[0\]\.text: control character U\+0000 at 1'),
    ('{"context": [{"speaker": "A\\u0007", "text": "ok"}]}', 400,
     r'context\[0\]\.speaker: control character U\+0007'),
    ('{"context": [{"speaker": "A", "text": "x\\ud800"}]}', 400,
     r'context\[0\]\.text: a lone surrogate U\+D800 at 1'),
    ('{"context": [{"speaker": "A", "text": 7}]}', 400, r'context\[0\]: needs'),
    ('{"context": {"speaker": "A"}}', 400, 'context: needs a list'),
    ('{"query": "1+1\\u0000"}', 400, r'query: control character U\+0000'),
])
def test_hostile_bodies_get_a_4xx_naming_the_problem(body, status, message):
  client = Client(server.make_app(echo, ServeConfig(), toolset=lambda q, c: [q]))
  path = '/v1/toolset' if '"query"' in body else '/v1/respond'
  response = client.post(path, data=body, content_type='application/json')
  assert response.status_code == status
  assert re.search(message, response.get_json()['error'])


def test_tabs_newlines_and_unknown_fields_are_accepted():
  client = Client(server.make_app(echo, ServeConfig()))
  response = client.post('/v1/respond', json={
      'context': [{'speaker': 'A', 'text': 'a\tb\nc\r', 'mood': 'happy'}], 'extra': [1, 2]})
  assert response.status_code == 200 and response.get_json() == {'reply': '1 turns'}


@pytest.fixture
def running():
  """Starts a waitress server on a free loopback port; yields (url, server, queue)."""
  started = []

  def start(respond, **settings):
    cfg = ServeConfig(port=0, **settings)
    http, queue = server.create_server(respond, cfg)
    thread = threading.Thread(target=http.run, daemon=True)
    thread.start()
    started.append(http)
    return f'http://127.0.0.1:{http.effective_port}', http, queue

  yield start
  for http in started:
    http.close()


def _post(url, body=DIALOG, timeout=10):
  request = urllib.request.Request(url + '/v1/respond', data=json.dumps(body).encode(),
                                   headers={'Content-Type': 'application/json'})
  try:
    with urllib.request.urlopen(request, timeout=timeout) as response:
      return response.status, json.loads(response.read()), dict(response.headers)
  except urllib.error.HTTPError as error:
    return error.code, json.loads(error.read()), dict(error.headers)


def test_a_stalled_client_does_not_hold_the_others(running):
  url, http, _ = running(echo, client_timeout_s=30)
  port = http.effective_port
  stalled_headers = socket.create_connection(('127.0.0.1', port))
  stalled_headers.sendall(b'POST /v1/respond HTTP/1.1\r\nHost: x\r\n')  # and nothing more
  lying = socket.create_connection(('127.0.0.1', port))
  lying.sendall(b'POST /v1/respond HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"co')
  start = time.monotonic()
  assert _post(url)[:2] == (200, {'reply': '1 turns'})
  assert time.monotonic() - start < 2
  stalled_headers.close()
  lying.close()


def test_oversize_headers_are_refused_and_serving_goes_on(running):
  url, _, _ = running(echo, max_header_bytes=2048)
  request = urllib.request.Request(url + '/v1/respond', data=json.dumps(DIALOG).encode(),
                                   headers={'X-Padding': 'x' * 5000})
  with pytest.raises(urllib.error.HTTPError) as refused:
    urllib.request.urlopen(request, timeout=10)
  assert 400 <= refused.value.code < 500
  assert _post(url)[0] == 200


def test_requests_waiting_together_are_answered_in_one_padded_call(running):
  """While the model answers one request, three more arrive: they go in one
  call of exactly max_batch dialogs (empty ones as padding), each with its
  seed (the body's, else the next of a counter), and each gets its own answer."""
  release, entered, calls = threading.Event(), threading.Semaphore(0), []

  def respond(dialogs, seeds):
    calls.append(([len(turns) for turns in dialogs], list(seeds)))
    entered.release()
    release.wait(10)
    return [Reply(f'{len(turns)} turns, seed {seed}') for turns, seed in zip(dialogs, seeds)]

  url, _, queue = running(respond, max_batch=4, threads=6)
  results = {}

  def ask(name, turns, seed=None):
    body = {'context': [{'speaker': 'A', 'text': 'hi'}] * turns,
            **({} if seed is None else {'seed': seed})}
    results[name] = _post(url, body)

  first = threading.Thread(target=ask, args=('first', 1, 42))
  first.start()
  assert entered.acquire(timeout=10)  # the model is busy with the first
  waiting = [threading.Thread(target=ask, args=(f'w{n}', n + 2, 7 if n == 1 else None))
             for n in range(3)]
  for thread in waiting:
    thread.start()
  deadline = time.monotonic() + 10
  while queue.in_flight < 4 and time.monotonic() < deadline:
    time.sleep(0.01)
  release.set()
  for thread in [first, *waiting]:
    thread.join(10)
  assert calls[0] == ([1, 0, 0, 0], [42, 0, 0, 0])
  assert len(calls) == 2  # the three waiting ones together
  sizes, seeds = calls[1]
  assert sorted(sizes) == [0, 2, 3, 4] and sizes[-1] == 0 and 7 in seeds
  for name, turns in (('w0', 2), ('w1', 3), ('w2', 4)):
    status, body, _ = results[name]
    assert status == 200 and body['reply'].startswith(f'{turns} turns, seed ')
  assert results['w1'][1]['reply'] == '3 turns, seed 7'
  assert _post(url, {'context': [{'speaker': 'A', 'text': 'hi'}], 'seed': -1})[1] == {
      'error': 'seed: needs an integer in [0, 2147483647], got -1'}


def test_a_full_queue_answers_503_with_retry_after(running):
  release, entered = threading.Event(), threading.Semaphore(0)

  def slow(dialogs, seeds=None):
    entered.release()
    release.wait(10)
    return echo(dialogs)

  url, _, queue = running(slow, max_queue=1, threads=4)
  results = []
  first = threading.Thread(target=lambda: results.append(_post(url)))
  first.start()
  assert entered.acquire(timeout=10)  # the model is busy with the first
  second = threading.Thread(target=lambda: results.append(_post(url)))
  second.start()
  deadline = time.monotonic() + 10
  while queue.in_flight < 2 and time.monotonic() < deadline:  # the second waits its turn
    time.sleep(0.01)
  status, body, headers = _post(url)
  assert status == 503 and 'waiting for the model' in body['error']
  assert headers['Retry-After'] == '1'
  release.set()
  first.join(10)
  second.join(10)
  assert sorted(r[0] for r in results) == [200, 200]


SERVE_SLOWLY = '''
import sys, time
from lamda_jax.config import ServeConfig
from lamda_jax.serving import server

class Reply:
  def to_json(self):
    return {"reply": "done"}

def respond(dialogs, seeds=None):
  print("answering", flush=True)
  time.sleep(1.5)
  return [Reply() for _ in dialogs]

server.serve(respond, ServeConfig(port=int(sys.argv[1])))
print("exited cleanly", flush=True)
'''


def test_sigterm_answers_the_request_in_flight_and_exits_0():
  with socket.socket() as probe:
    probe.bind(('127.0.0.1', 0))
    port = probe.getsockname()[1]
  process = subprocess.Popen([sys.executable, '-c', SERVE_SLOWLY, str(port)], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  url = f'http://127.0.0.1:{port}'
  deadline = time.monotonic() + 60
  while time.monotonic() < deadline:
    try:
      socket.create_connection(('127.0.0.1', port), timeout=1).close()
      break
    except OSError:
      time.sleep(0.1)
  results = []
  request = threading.Thread(target=lambda: results.append(_post(url, timeout=30)))
  request.start()
  assert process.stdout.readline().strip().endswith('answering')
  process.send_signal(signal.SIGTERM)
  request.join(30)
  assert results and results[0][:2] == (200, {'reply': 'done'})
  stdout, stderr = process.communicate(timeout=30)
  assert process.returncode == 0, stderr[-2000:]
  assert 'exited cleanly' in stdout
  with pytest.raises(OSError):  # nothing listens any more
    socket.create_connection(('127.0.0.1', port), timeout=1).close()


def test_the_openai_client_talks_to_the_chat_completions_endpoint(running):
  """The real `openai` client, pointed at the local server: user turns are the
  dialogs' user speaker, assistant turns the model's, system prompts left out."""
  heard = []

  def respond(dialogs, seeds=None):
    heard.extend(dialogs)
    return [Reply(f'{len(turns)} turns') for turns in dialogs]

  url, _, _ = running(respond)
  client = openai.OpenAI(base_url=f'{url}/v1', api_key='not needed', max_retries=0)
  answer = client.chat.completions.create(model='lamda-tiny', messages=[
      {'role': 'system', 'content': 'You are helpful.'},
      {'role': 'user', 'content': 'hi!'},
      {'role': 'assistant', 'content': 'hello, how are you?'},
      {'role': 'user', 'content': [{'type': 'text', 'text': 'fine, '}, {'type': 'text', 'text': 'you?'}]},
  ])
  assert answer.choices[0].message.role == 'assistant'
  assert answer.choices[0].message.content == '3 turns'
  assert answer.choices[0].finish_reason == 'stop' and answer.model == 'lamda-tiny'
  assert answer.model_extra['lamda'] == {'reply': '3 turns'}  # candidates and scores ride here
  assert [(t.speaker, t.text) for t in heard[0]] == [
      ('A', 'hi!'), ('B', 'hello, how are you?'), ('A', 'fine, you?')]
  with pytest.raises(openai.BadRequestError, match='stream: streaming is not supported'):
    client.chat.completions.create(model='x', stream=True,
                                   messages=[{'role': 'user', 'content': 'hi'}])
  with pytest.raises(openai.BadRequestError, match=r'messages\[0\]\.role: needs one of'):
    client.chat.completions.create(model='x', messages=[{'role': 'tool', 'content': 'hi'}])
  with pytest.raises(openai.BadRequestError, match=r'messages\[0\]\.text: control character'):
    client.chat.completions.create(model='x', messages=[{'role': 'user', 'content': 'a\x00'}])
