"""`--mode serve`: sample-and-rank behind a small HTTP JSON endpoint (Werkzeug).

    POST /v1/respond  {"context": [{"speaker": "A", "text": "hi"}, ...]}
      -> 200 {"reply": ..., "fallback": ..., "candidates": [...]}
         and, through the research loop (research.enabled), the draft, the
         "transcript" [{"speaker", "text"}], "calls", "citation" and "events"
    POST /v1/toolset  {"query": "135+7721", "conversation_id": "c1"}   (when given a toolset)
      -> 200 {"results": ["7856"]}
    GET  /healthz     -> 200 {"status": "ok"}

Binds to 127.0.0.1 unless `serve.host` says otherwise. Every bad request gets
a 4xx with a JSON {"error": ...} naming the problem: malformed JSON or a bad
field (400), too many turns or too long a turn (422), a body over
`serve.max_request_bytes` (413); an unexpected failure is a 500, never a crash.
Requests are answered one at a time, as the model runs on the whole mesh.
"""

import json

from absl import logging
from werkzeug import exceptions, routing, serving
from werkzeug.wrappers import Request, Response

from lamda_jax.config import ServeConfig
from lamda_jax.data import dialog

ROUTES = routing.Map([routing.Rule('/v1/respond', endpoint='respond', methods=['POST']),
                      routing.Rule('/v1/toolset', endpoint='toolset', methods=['POST']),
                      routing.Rule('/healthz', endpoint='health', methods=['GET'])])
MAX_CONVERSATION_ID = 128


def _json(payload, status=200) -> Response:
  return Response(json.dumps(payload), status=status, mimetype='application/json')


class UnprocessableDialog(exceptions.UnprocessableEntity):
  pass


def _json_body(body: bytes):
  try:
    return json.loads(body.decode('utf-8'))
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
  return query, conversation


def parse_request(body: bytes, cfg: ServeConfig):
  """The request's dialog as Turns; a 4xx exception names what is wrong."""
  record = _json_body(body)
  try:
    turns = dialog.parse_context(record)
  except ValueError as error:
    raise exceptions.BadRequest(str(error)) from None
  if len(turns) > cfg.max_turns:
    raise UnprocessableDialog(f'context: {len(turns)} turns, at most {cfg.max_turns} allowed')
  for index, turn in enumerate(turns):
    if len(turn.text) > cfg.max_turn_chars:
      raise UnprocessableDialog(f'context[{index}].text: {len(turn.text)} characters, at most '
                                f'{cfg.max_turn_chars} allowed')
  return turns


def make_app(respond, cfg: ServeConfig, toolset=None):
  """A WSGI app around `respond(list of dialogs) -> list of Decisions`, and
  `toolset(query, conversation_id) -> list of strings` when given (else 404)."""

  class LimitedRequest(Request):
    max_content_length = cfg.max_request_bytes

  @LimitedRequest.application
  def app(request):
    try:
      endpoint, _ = ROUTES.bind_to_environ(request.environ).match()
      if endpoint == 'health':
        return _json({'status': 'ok'})
      if endpoint == 'toolset':
        if toolset is None:
          raise exceptions.NotFound('this server has no toolset')
        return _json({'results': toolset(*parse_toolset_request(request.get_data(cache=False)))})
      turns = parse_request(request.get_data(cache=False), cfg)
      return _json(respond([turns])[0].to_json())
    except exceptions.RequestEntityTooLarge:
      return _json({'error': f'request body over {cfg.max_request_bytes} bytes'}, 413)
    except exceptions.HTTPException as error:
      return _json({'error': error.description}, error.code)
    except Exception as error:  # pylint: disable=broad-exception-caught
      logging.exception('Failed to answer %s %s', request.method, request.path)
      return _json({'error': f'internal error: {type(error).__name__}: {error}'}, 500)

  return app


def serve(respond, cfg: ServeConfig, toolset=None):
  logging.info('Serving POST http://%s:%d/v1/respond%s', cfg.host, cfg.port,
               ' and /v1/toolset' if toolset else '')
  serving.run_simple(cfg.host, cfg.port, make_app(respond, cfg, toolset), threaded=False)
