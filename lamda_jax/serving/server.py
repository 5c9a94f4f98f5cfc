"""`--mode serve`: sample-and-rank behind a small HTTP JSON endpoint (Werkzeug).

    POST /v1/respond  {"context": [{"speaker": "A", "text": "hi"}, ...]}
      -> 200 {"reply": ..., "fallback": ..., "candidates": [...]}
         and, through the research loop (research.enabled), the draft, the
         "transcript" [{"speaker", "text"}], "calls", "citation" and "events"
    POST /v1/chat/completions  OpenAI's chat format: {"messages": [{"role", "content"}]}
      -> 200 {"object": "chat.completion", "choices": [{"message": {"role": "assistant",
         "content": reply}, ...}], "lamda": the /v1/respond answer (candidates, scores)}
    POST /v1/toolset  {"query": "135+7721", "conversation_id": "c1"}   (when given a toolset)
      -> 200 {"results": ["7856"]}
    GET  /healthz     -> 200 {"status": "ok"}
    GET  /            -> the chat page (chat_page.html): a person chats through
                         /v1/chat/completions and sees the last turn's ranked
                         candidates, their four scores, why any were dropped, and
                         the research transcript and citation when there is one

Binds to 127.0.0.1 unless `serve.host` says otherwise. Every bad request gets
a 4xx with a JSON {"error": ...} naming the problem: malformed JSON, JSON
nested deeper than MAX_JSON_DEPTH or a bad field (400), too many turns or too
long a turn (422), a body over `serve.max_request_bytes` (413). Text with a
NUL or another control character (tab, newline and carriage return aside) or a
lone surrogate is refused (400, naming the field and the character), never
cleaned silently. Unknown fields are ignored. An unexpected failure is a 500,
never a crash.

Waitress serves it: it reads each request whole before a worker thread sees
it, drops clients idle past `serve.client_timeout_s` and caps connections and
header sizes, so a slow or stalled client never holds the others. Requests
waiting for the model are answered together (`Batcher`: up to
`serve.max_batch` dialogs in one sample-and-rank call, each answer the same as
alone: its own `seed`, the body's or the next of a counter, and always the
same batch shape); at most `serve.max_queue` wait, and beyond that a request
gets 503 with Retry-After.
SIGTERM stops accepting, answers the requests in flight and exits cleanly.
"""

import base64
import concurrent.futures
import contextlib
import functools
import hashlib
import importlib.resources
import itertools
import json
import queue as queue_lib
import re
import signal
import threading
import time
import unicodedata
import uuid

from absl import logging
import waitress
from werkzeug import exceptions, routing
from werkzeug.wrappers import Request, Response

from lamda_jax.config import ServeConfig
from lamda_jax.data import dialog

ROUTES = routing.Map([routing.Rule('/', endpoint='page', methods=['GET']),
                      routing.Rule('/v1/respond', endpoint='respond', methods=['POST']),
                      routing.Rule('/v1/chat/completions', endpoint='chat', methods=['POST']),
                      routing.Rule('/v1/toolset', endpoint='toolset', methods=['POST']),
                      routing.Rule('/healthz', endpoint='health', methods=['GET'])])
MAX_CONVERSATION_ID = 128
MAX_JSON_DEPTH = 32  # a dialog is 3 deep; nothing a client needs is deeper
RETRY_AFTER_S = 1


@functools.cache
def chat_page() -> tuple[str, str]:
  """(the chat page, its Content-Security-Policy): only the page's own inline
  script and style may run (by their sha256), and it may only talk to this
  server."""
  page = importlib.resources.files(__package__).joinpath('chat_page.html').read_text('utf-8')
  def digest(tag):
    body = re.search(f'<{tag}>(.*?)</{tag}>', page, re.S).group(1)
    return "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
  policy = (f"default-src 'none'; script-src {digest('script')}; style-src {digest('style')}; "
            "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
  return page, policy


def _json(payload, status=200, headers=None) -> Response:
  return Response(json.dumps(payload), status=status, mimetype='application/json',
                  headers=headers)


class Batcher:
  """Answers the dialogs of concurrent requests together: `answer` queues one
  and waits; one thread takes the first waiting, gathers more for up to
  `wait_s` (at most `max_batch`), and calls `respond(dialogs, seeds)` with
  exactly `max_batch` of them, empty dialogs as padding. With a seed per
  dialog and a fixed batch shape, no answer depends on which requests it met.
  """

  def __init__(self, respond, max_batch: int, wait_s: float):
    self.respond, self.max_batch, self.wait_s = respond, max_batch, wait_s
    self.waiting = queue_lib.SimpleQueue()
    threading.Thread(target=self._serve, daemon=True, name='batcher').start()

  def answer(self, turns, seed: int):
    done = concurrent.futures.Future()
    self.waiting.put((turns, seed, done))
    return done.result()

  def _gather(self) -> list:
    batch = [self.waiting.get()]
    deadline = time.monotonic() + self.wait_s
    while len(batch) < self.max_batch:
      try:
        batch.append(self.waiting.get(timeout=max(deadline - time.monotonic(), 0)))
      except queue_lib.Empty:
        break
    return batch

  def _serve(self):
    while True:
      batch = self._gather()
      padding = self.max_batch - len(batch)
      try:
        answers = self.respond([turns for turns, _, _ in batch] + [()] * padding,
                               [seed for _, seed, _ in batch] + [0] * padding)
      except Exception as failure:  # pylint: disable=broad-exception-caught  # to each request
        for _, _, done in batch:
          done.set_exception(failure)
        continue
      for (_, _, done), answer in zip(batch, answers):
        done.set_result(answer)


class ModelQueue:
  """Admits requests for the model: at most `max_queue` wait for it."""

  def __init__(self, max_queue: int):
    self.max_queue = max_queue
    self.draining = threading.Event()
    self.in_flight = 0  # admitted: running or waiting
    self._count = threading.Lock()
    self._model = threading.Lock()

  @contextlib.contextmanager
  def turn(self, exclusive: bool = True):
    """Admitted (or 503); with `exclusive`, alone on the model (the Batcher
    needs no lock: it alone calls the model)."""
    with self._count:
      if self.draining.is_set():
        raise exceptions.ServiceUnavailable('the server is shutting down')
      if self.in_flight > self.max_queue:
        raise exceptions.ServiceUnavailable(
            f'busy: {self.in_flight - 1} requests are waiting for the model', retry_after=RETRY_AFTER_S)
      self.in_flight += 1
    try:
      with self._model if exclusive else contextlib.nullcontext():
        yield
    finally:
      with self._count:
        self.in_flight -= 1


class UnprocessableDialog(exceptions.UnprocessableEntity):
  pass


def _depth(body: str) -> int:
  """The deepest nesting of brackets outside strings, found before parsing."""
  depth = deepest = 0
  in_string = escaped = False
  for char in body:
    if in_string:
      if escaped:
        escaped = False
      elif char == '\\':
        escaped = True
      elif char == '"':
        in_string = False
    elif char == '"':
      in_string = True
    elif char in '[{':
      depth += 1
      deepest = max(deepest, depth)
    elif char in ']}':
      depth -= 1
  return deepest


def check_text(value: str, field: str):
  """Refuses NUL and other control characters (tab, newline, CR aside) and lone surrogates."""
  for index, char in enumerate(value):
    if '\ud800' <= char <= '\udfff':
      raise exceptions.BadRequest(f'{field}: a lone surrogate U+{ord(char):04X} at {index}')
    if unicodedata.category(char) == 'Cc' and char not in '\t\n\r':
      raise exceptions.BadRequest(f'{field}: control character U+{ord(char):04X} at {index}')


def _json_body(body: bytes):
  try:
    text = body.decode('utf-8')
    if _depth(text) > MAX_JSON_DEPTH:
      raise exceptions.BadRequest(f'JSON nested deeper than {MAX_JSON_DEPTH} levels')
    return json.loads(text)
  except UnicodeDecodeError as error:
    raise exceptions.BadRequest(f'body is not UTF-8 (byte {error.start})') from None
  except json.JSONDecodeError as error:
    raise exceptions.BadRequest(f'malformed JSON: {error.msg} (line {error.lineno}, '
                                f'column {error.colno})') from None


def parse_toolset_request(body: bytes) -> tuple[str, str]:
  """(query, conversation id: '' for none); a 4xx exception names what is wrong."""
  record = _json_body(body)
  if not isinstance(record, dict):
    raise exceptions.BadRequest('not a JSON object')
  query, conversation = record.get('query'), record.get('conversation_id', '')
  if not isinstance(query, str) or not query.strip():
    raise exceptions.BadRequest('query: needs a non-empty string')
  if not isinstance(conversation, str) or len(conversation) > MAX_CONVERSATION_ID:
    raise exceptions.BadRequest(f'conversation_id: needs a string of at most '
                                f'{MAX_CONVERSATION_ID} characters')
  check_text(query, 'query')
  check_text(conversation, 'conversation_id')
  return query, conversation


def check_dialog(turns, cfg: ServeConfig, field: str = 'context'):
  """The limits and text rules every dialog a client sends must meet."""
  if len(turns) > cfg.max_turns:
    raise UnprocessableDialog(f'{field}: {len(turns)} turns, at most {cfg.max_turns} allowed')
  for index, turn in enumerate(turns):
    check_text(turn.speaker, f'{field}[{index}].speaker')
    check_text(turn.text, f'{field}[{index}].text')
    if len(turn.text) > cfg.max_turn_chars:
      raise UnprocessableDialog(f'{field}[{index}].text: {len(turn.text)} characters, at most '
                                f'{cfg.max_turn_chars} allowed')
  return turns


MAX_SEED = 2**31 - 1


def parse_seed(record):
  """The request's `seed` (OpenAI's field name too), or None to draw one."""
  seed = record.get('seed') if isinstance(record, dict) else None
  if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or
                           not 0 <= seed <= MAX_SEED):
    raise exceptions.BadRequest(f'seed: needs an integer in [0, {MAX_SEED}], got {seed!r}')
  return seed


def parse_request(body: bytes, cfg: ServeConfig):
  """(the request's dialog as Turns, its seed or None); a 4xx names what is wrong."""
  record = _json_body(body)
  try:
    turns = dialog.parse_context(record)
  except ValueError as error:
    raise exceptions.BadRequest(str(error)) from None
  return check_dialog(turns, cfg), parse_seed(record)


CHAT_ROLES = {'user': 0, 'assistant': 1, 'system': None, 'developer': None}


def parse_chat_request(body: bytes, cfg: ServeConfig, speakers) -> tuple[tuple, str, int | None]:
  """(dialog, model name, seed or None) of an OpenAI chat-completions request.

  `user` turns are spoken by speakers[0] and `assistant` turns by speakers[1];
  `system` and `developer` messages are left out (LaMDA's context is the
  dialog alone). Content is a string or a list of text parts. One choice, no
  streaming: anything else is a 400 naming the field.
  """
  record = _json_body(body)
  if not isinstance(record, dict):
    raise exceptions.BadRequest('not a JSON object')
  if record.get('stream'):
    raise exceptions.BadRequest('stream: streaming is not supported; ask without it')
  if record.get('n', 1) != 1:
    raise exceptions.BadRequest(f'n: one choice is returned, got {record.get("n")!r}')
  messages = record.get('messages')
  if not isinstance(messages, list) or not messages:
    raise exceptions.BadRequest('messages: needs a non-empty list of {"role", "content"}')
  turns = []
  for index, message in enumerate(messages):
    field = f'messages[{index}]'
    if not isinstance(message, dict) or message.get('role') not in CHAT_ROLES:
      raise exceptions.BadRequest(f'{field}.role: needs one of {", ".join(CHAT_ROLES)}')
    content = message.get('content')
    if isinstance(content, list):
      content = ''.join(part['text'] for part in content if isinstance(part, dict)
                        and part.get('type') == 'text' and isinstance(part.get('text'), str))
    if not isinstance(content, str):
      raise exceptions.BadRequest(f'{field}.content: needs a string or a list of text parts')
    speaker = CHAT_ROLES[message['role']]
    if speaker is None:
      continue
    if not content.strip():
      raise exceptions.BadRequest(f'{field}.content: is empty')
    turns.append(dialog.Turn(speakers[speaker], content))
  model = record.get('model')
  return (check_dialog(tuple(turns), cfg, 'messages'), model if isinstance(model, str) else 'lamda',
          parse_seed(record))


def chat_completion(decision, model: str) -> dict:
  """An OpenAI chat.completion object around a Decision; `lamda` holds the rest."""
  return {'id': f'chatcmpl-{uuid.uuid4().hex}', 'object': 'chat.completion',
          'created': int(time.time()), 'model': model,
          'choices': [{'index': 0, 'message': {'role': 'assistant', 'content': decision.reply},
                       'finish_reason': 'stop', 'logprobs': None}],
          'lamda': decision.to_json()}


def make_app(respond, cfg: ServeConfig, toolset=None, queue: ModelQueue | None = None,
             speakers=('A', 'B')):
  """A WSGI app around `respond(list of dialogs, list of seeds) -> list of
  Decisions` (called by a Batcher), and `toolset(query, conversation_id) ->
  list of strings` when given (else 404); `queue` admits requests to the
  model; `speakers` (user, model) name the turns of chat-completions messages
  as the training dialogs do."""
  queue = queue or ModelQueue(cfg.max_queue)
  batcher = Batcher(respond, cfg.max_batch, cfg.batch_wait_ms / 1000)
  drawn = itertools.count()  # seeds of requests that bring none

  def answer(turns, seed):
    with queue.turn(exclusive=False):
      return batcher.answer(turns, next(drawn) % (MAX_SEED + 1) if seed is None else seed)

  class LimitedRequest(Request):
    max_content_length = cfg.max_request_bytes

  def error(request, message: str, status: int, headers=None) -> Response:
    """{"error": message}; on the OpenAI endpoint, OpenAI's error object."""
    if request.path == '/v1/chat/completions':
      kind = 'invalid_request_error' if status < 500 else 'server_error'
      return _json({'error': {'message': message, 'type': kind, 'param': None, 'code': None}},
                   status, headers)
    return _json({'error': message}, status, headers)

  @LimitedRequest.application
  def app(request):
    try:
      endpoint, _ = ROUTES.bind_to_environ(request.environ).match()
      if endpoint == 'health':
        return _json({'status': 'ok'})
      if endpoint == 'page':
        page, policy = chat_page()
        return Response(page, mimetype='text/html', headers={
            'Content-Security-Policy': policy, 'X-Content-Type-Options': 'nosniff'})
      if endpoint == 'toolset':
        if toolset is None:
          raise exceptions.NotFound('this server has no toolset')
        query = parse_toolset_request(request.get_data(cache=False))
        with queue.turn():
          return _json({'results': toolset(*query)})
      if endpoint == 'chat':
        turns, model, seed = parse_chat_request(request.get_data(cache=False), cfg, speakers)
        return _json(chat_completion(answer(turns, seed), model))
      return _json(answer(*parse_request(request.get_data(cache=False), cfg)).to_json())
    except exceptions.RequestEntityTooLarge:
      return error(request, f'request body over {cfg.max_request_bytes} bytes', 413)
    except exceptions.HTTPException as failure:
      retry = getattr(failure, 'retry_after', None)
      return error(request, failure.description, failure.code,
                   {'Retry-After': str(retry)} if retry else None)
    except Exception as failure:  # pylint: disable=broad-exception-caught
      logging.exception('Failed to answer %s %s', request.method, request.path)
      return error(request, f'internal error: {type(failure).__name__}: {failure}', 500)

  return app


def _close_when_idle(server, queue: ModelQueue, timeout_s: float):
  """After SIGTERM: once the admitted requests are answered and their bytes
  sent (or `timeout_s` passed), empty the server loop's map from inside the
  loop (a trigger thunk), so `server.run()` returns."""
  deadline = time.monotonic() + timeout_s
  def busy():
    channels = [c for c in list(server._map.values())  # pylint: disable=protected-access
                if getattr(c, 'total_outbufs_len', 0) or getattr(c, 'requests', None)]
    return queue.in_flight or channels
  while busy() and time.monotonic() < deadline:
    time.sleep(0.05)

  def close_everything():
    for dispatcher in list(server._map.values()):  # pylint: disable=protected-access
      dispatcher.close()

  server.trigger.pull_trigger(close_everything)


def create_server(respond, cfg: ServeConfig, toolset=None, speakers=('A', 'B')):
  """(the waitress server, its ModelQueue); `server.effective_port` is the bound port."""
  queue = ModelQueue(cfg.max_queue)
  server = waitress.create_server(
      make_app(respond, cfg, toolset, queue, speakers), host=cfg.host, port=cfg.port, threads=cfg.threads,
      connection_limit=cfg.max_connections, channel_timeout=cfg.client_timeout_s,
      max_request_header_size=cfg.max_header_bytes, max_request_body_size=cfg.max_request_bytes,
      ident='lamda_jax', expose_tracebacks=False)
  return server, queue


def serve(respond, cfg: ServeConfig, toolset=None, speakers=('A', 'B')):
  server, queue = create_server(respond, cfg, toolset, speakers)

  def drain(*_):
    logging.warning('SIGTERM: answering the %d requests in flight, then stopping.',
                    queue.in_flight)
    queue.draining.set()
    server.accepting = False  # no new connections (the socket closes when the loop ends)
    threading.Thread(target=_close_when_idle, args=(server, queue, cfg.drain_timeout_s),
                     daemon=True).start()

  previous = signal.signal(signal.SIGTERM, drain)
  logging.info('Serving POST http://%s:%d/v1/respond, /v1/chat/completions%s', cfg.host,
               server.effective_port, ' and /v1/toolset' if toolset else '')
  try:
    server.run()
  finally:
    signal.signal(signal.SIGTERM, previous)
    server.close()
    server.task_dispatcher.shutdown()
  logging.info('Stopped serving.')
