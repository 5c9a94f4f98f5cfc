"""Sample-and-rank on a real run: the responder, chat, generate and the HTTP endpoint."""

import dataclasses
import io
import json
import threading
import urllib.request

import pytest
from werkzeug import serving
from werkzeug.test import Client

from lamda_jax import attributes
from lamda_jax.config import ConfigError, DecodeConfig, ServeConfig
from lamda_jax.data import dialog
from lamda_jax.data.dialog import Turn
from lamda_jax.serving import chat, generate, server
from lamda_jax.serving import responder as responder_lib

DIALOG = [{'speaker': 'A', 'text': 'How do I read a file in Python?'}]


def _experiment(a_run, **decode):
  experiment, run_dir = a_run
  settings = {'from_run': run_dir, 'num_candidates': 4, 'max_new_tokens': 12, **decode}
  return dataclasses.replace(experiment, decode=DecodeConfig(**settings))


@pytest.fixture(scope='module')
def responder(a_run):
  return responder_lib.Responder(_experiment(a_run))


def _paper_quality(candidate):
  return (3 * candidate.scores['SENSIBLE'] + candidate.scores['SPECIFIC'] +
          candidate.scores['INTERESTING'])


def test_the_reply_is_the_best_safe_candidate_and_reproducible(responder, a_run):
  turns = dialog.parse_context({'context': DIALOG})
  decisions = responder.respond([turns, turns[:0]])
  assert len(decisions) == 2
  for decision in decisions:
    assert len(decision.candidates) == 4
    for candidate in decision.candidates:
      assert set(candidate.scores) == set(attributes.NAMES)
      assert all(0 <= p <= 1 for p in candidate.scores.values())
      assert candidate.num_tokens <= 12 + 1
    # The paper's rule, recomputed from the returned scores: drop empty replies and
    # those with P(UNSAFE = 0) below the threshold; the reply maximises 3S + Sp + I.
    safe = [c for c in decision.candidates if c.text.strip() and
            1 - c.scores['UNSAFE'] >= responder.config.safety_threshold]
    assert [c for c in decision.candidates if not c.dropped] == safe
    for candidate in decision.candidates:  # the number ranked by is the paper's
      assert candidate.rank_score == pytest.approx(_paper_quality(candidate), abs=1e-9)
    if not safe:
      assert decision.fallback and decision.reply == responder.config.fallback_reply
      continue
    assert not decision.fallback
    best = max(map(_paper_quality, safe))
    assert _paper_quality(decision.candidates[0]) == pytest.approx(best, abs=1e-9)
    assert decision.reply == decision.candidates[0].text and decision.candidates[0] in safe
  again = responder_lib.Responder(_experiment(a_run)).respond([turns, turns[:0]])
  assert [d.to_json() for d in again] == [d.to_json() for d in decisions]


def test_an_answer_with_a_seed_is_the_same_alone_or_batched(responder):
  """What the server's Batcher relies on: a dialog's answer depends on its
  seed and the batch shape, not on the other dialogs or earlier calls."""
  question = dialog.parse_context({'context': DIALOG})
  other = (Turn('A', 'What is a list?'), Turn('B', 'A sequence.'), Turn('A', 'And a tuple?'))
  alone = responder.respond([question, (), (), ()], [5, 0, 0, 0])[0]
  responder.respond([other, other, (), ()])  # calls in between change nothing
  together = responder.respond([other, question, other, ()], [9, 5, 11, 0])
  assert together[1].to_json() == alone.to_json()
  assert together[0].to_json() != together[2].to_json()  # other seeds, other samples
  another_seed = responder.respond([question, (), (), ()], [6, 0, 0, 0])[0]
  assert [c.text for c in another_seed.candidates] != [c.text for c in alone.candidates]


def test_max_new_tokens_must_leave_room_for_a_prompt(a_run):
  with pytest.raises(ConfigError, match='decode.max_new_tokens'):
    responder_lib.Responder(_experiment(a_run, max_new_tokens=62))


def test_a_scripted_chat_keeps_history_and_shows_candidates(responder):
  out = io.StringIO()
  lines = ['hello there\n', '/candidates\n', 'what is a list?\n', '/reset\n', '/nope\n',
           'and a tuple?\n', '/quit\n', 'never read\n']
  result = chat.run(responder, lines, out)
  text = out.getvalue()
  assert result == {'mode': 'chat', 'turns': 2}  # the reset dropped the first four turns
  assert text.count('\nB: ') == 3 and 'never read' not in text
  assert ' 1. ' in text and ' 4. ' in text and 'sens=' in text
  assert '(history cleared)' in text and "Unknown command '/nope'" in text


def test_generate_writes_a_decision_per_context(responder, tmp_path):
  contexts = tmp_path / 'contexts.jsonl'
  contexts.write_text(''.join(json.dumps({'id': i, 'context': DIALOG[:i % 2]}) + '\n'
                              for i in range(3)))
  result = generate.run(responder, str(contexts), str(tmp_path / 'out'))
  assert result['contexts'] == 3
  written = [json.loads(line) for line in open(result['output'], encoding='utf-8')]
  assert [record['id'] for record in written] == [0, 1, 2]
  assert all(len(record['candidates']) == 4 and 'reply' in record for record in written)
  contexts.write_text('{"context": [{"speaker": "A"}]}\n')
  with pytest.raises(dialog.RecordError, match=r'contexts.jsonl:1: context\[0\]'):
    generate.run(responder, str(contexts), str(tmp_path / 'out'))


@pytest.fixture(scope='module')
def client(responder):
  return Client(server.make_app(responder.respond, ServeConfig(max_request_bytes=2000,
                                                               max_turns=3, max_turn_chars=100)))


def test_http_answers_a_valid_request(client):
  response = client.post('/v1/respond', json={'context': DIALOG})
  assert response.status_code == 200
  at_the_limits = [{'speaker': 'A', 'text': 'x' * 100}] * 3  # max_turns, max_turn_chars
  assert client.post('/v1/respond', json={'context': at_the_limits}).status_code == 200
  body = response.get_json()
  assert isinstance(body['reply'], str) and len(body['candidates']) == 4
  assert client.get('/healthz').get_json() == {'status': 'ok'}


@pytest.mark.parametrize('body, status, message', [
    (b'{"context": [', 400, 'malformed JSON'),
    (b'\xff\xfe', 400, 'not UTF-8'),
    (b'[1, 2]', 400, 'not a JSON object'),
    (b'{"history": []}', 400, 'context: needs a list of turns'),
    (b'{"context": [{"speaker": "A", "text": ""}]}', 400, 'context[0]'),
    (json.dumps({'context': DIALOG * 4}).encode(), 422, '4 turns, at most 3'),
    (json.dumps({'context': DIALOG * 3 + [{'speaker': 'A', 'text': 'x' * 100}]}).encode(), 422,
     '4 turns, at most 3'),
    (json.dumps({'context': [{'speaker': 'A', 'text': 'x' * 101}]}).encode(), 422,
     'context[0].text: 101 characters'),
    (json.dumps({'context': [{'speaker': 'A', 'text': 'x' * 99}] * 30}).encode(), 413,
     'request body over 2000 bytes'),
])
def test_http_bad_requests_get_a_4xx_with_a_message(client, body, status, message):
  response = client.post('/v1/respond', data=body, content_type='application/json')
  assert response.status_code == status
  assert message in response.get_json()['error']


def test_http_wrong_method_or_path_and_internal_errors(client):
  assert client.get('/v1/respond').status_code == 405
  assert client.post('/v2/respond', json={'context': DIALOG}).status_code == 404

  def broken(*_):
    raise RuntimeError('decoder exploded')

  response = Client(server.make_app(broken, ServeConfig())).post('/v1/respond',
                                                                 json={'context': DIALOG})
  assert response.status_code == 500 and 'decoder exploded' in response.get_json()['error']


def test_serves_on_loopback_by_default(responder):
  cfg = ServeConfig(port=0)
  assert cfg.host == '127.0.0.1'
  http = serving.make_server(cfg.host, cfg.port, server.make_app(responder.respond, cfg))
  thread = threading.Thread(target=http.handle_request)
  thread.start()
  request = urllib.request.Request(f'http://127.0.0.1:{http.port}/v1/respond',
                                   data=json.dumps({'context': DIALOG}).encode(), method='POST')
  with urllib.request.urlopen(request, timeout=60) as response:
    assert response.status == 200 and 'reply' in json.loads(response.read())
  thread.join()
  http.server_close()


def test_turns_are_rendered_with_the_configured_speakers(responder):
  assert responder.user_turn('hi') == Turn('A', 'hi')
  assert responder.reply_turn('hello') == Turn('B', 'hello')
