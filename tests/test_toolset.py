"""The toolset (§6.2): its contract, the translator on FreeDict, retrieval with bm25s."""

import gzip
import io
import json
import os
import random
import subprocess
import sys

import pytest
from werkzeug.test import Client

from lamda_jax import config as config_lib
from lamda_jax.config import ServeConfig
from lamda_jax.data import corpora
from lamda_jax.grounding import retrieval, toolset, translator
from lamda_jax.serving import server
from tests.toolset_helpers import SNIPPETS, make_toolset

FREEDICT = translator.DEBIAN_DIR
needs_freedict = pytest.mark.skipif(
    not os.path.exists(os.path.join(FREEDICT, 'freedict-eng-fra.index')),
    reason='Debian dict-freedict-* packages are not installed (make data installs them)')
needs_wordnet = pytest.mark.skipif(not os.path.isdir(corpora.WORDNET_DIR),
                                   reason='Debian wordnet-base is not installed (make data)')



@pytest.fixture(scope='module')
def folder(tmp_path_factory):
  return tmp_path_factory.mktemp('toolset')


@pytest.fixture(scope='module')
def tools(folder):
  return make_toolset(folder)


@pytest.fixture(scope='module')
def collection(tools, folder):
  return str(folder / 'snippets.jsonl')


# --- the contract ---

@needs_freedict
def test_outputs_concatenate_in_the_papers_order(tools):
  conversation = toolset.Conversation()
  assert tools.query('135+7721', conversation) == ['7856']  # the paper's example
  assert tools.query('how do you say dog in German', conversation) == ['Hund']
  by_tool = tools.by_tool('city in French', toolset.Conversation())
  assert list(by_tool) == ['calculator', 'translator', 'retrieval']
  assert by_tool['calculator'] == [] and by_tool['translator'] == ['cité, ville']
  assert by_tool['retrieval'] == ['Paris is the capital and largest city of France. '
                                  'https://example.org/paris']
  assert tools.query('city in French', toolset.Conversation()) == (
      by_tool['calculator'] + by_tool['translator'] + by_tool['retrieval'])


@pytest.mark.parametrize('query', ['', '   ', 'x' * 501, 'zzzqqq vvvwww', '\x00\x01', '((((('])
def test_a_query_no_tool_reads_gives_an_empty_list(tools, query):
  assert tools.query(query, toolset.Conversation()) == []


def test_a_failing_tool_adds_nothing_and_the_others_still_answer(tools, monkeypatch):
  def broken(query, conversation):
    raise RuntimeError('disk on fire')
  monkeypatch.setitem(tools.tools, 'retrieval', broken)
  assert tools.query('2 * 21', toolset.Conversation()) == ['42']


# --- retrieval ---

def test_retrieval_ranks_the_matching_snippet_first(tools):
  assert tools.tools['retrieval']('capital of France', toolset.Conversation()) == [
      'Paris is the capital and largest city of France. https://example.org/paris']


def test_asking_again_returns_the_next_snippet_and_a_new_conversation_starts_over(tools):
  conversation, ask = toolset.Conversation(), tools.tools['retrieval']
  first, second = ask('Nadal tennis', conversation), ask('nadal  TENNIS', conversation)
  assert [r.split()[-1] for r in first + second] == ['https://example.org/nadal-clay',
                                                     'https://example.org/nadal']
  assert ask('Nadal tennis', toolset.Conversation()) == first
  ask('Nadal tennis', conversation)  # the third: Federer, then nothing is left
  assert ask('Nadal tennis', conversation) == []


def test_the_index_is_built_once_and_reopened(collection, tmp_path):
  folder = retrieval.build_index([collection], str(tmp_path))
  built = os.stat(os.path.join(folder, 'snippets.jsonl')).st_mtime_ns
  assert retrieval.build_index([collection], str(tmp_path)) == folder
  assert os.stat(os.path.join(folder, 'snippets.jsonl')).st_mtime_ns == built
  index = retrieval.Index(folder)
  assert len(index) == len(SNIPPETS)
  assert index.snippet(3) == retrieval.Snippet(**SNIPPETS[3])


def test_a_changed_collection_is_indexed_anew(tmp_path):
  path = tmp_path / 'c.jsonl'
  path.write_text(json.dumps(SNIPPETS[0]) + '\n')
  first = retrieval.build_index([str(path)], str(tmp_path / 'index'))
  path.write_text(json.dumps(SNIPPETS[0]) + '\n' + json.dumps(SNIPPETS[3]) + '\n')
  os.utime(path, ns=(1, 1))
  assert retrieval.build_index([str(path)], str(tmp_path / 'index')) != first


def test_a_bad_collection_line_is_named(tmp_path):
  path = tmp_path / 'bad.jsonl'
  path.write_text(json.dumps(SNIPPETS[0]) + '\n{"id": "x", "text": "no url"}\n')
  with pytest.raises(ValueError, match=rf'{path}:2: "url": needs a string'):
    retrieval.build_index([str(path)], str(tmp_path / 'index'))


def test_snippets_are_cut_at_sentence_boundaries():
  text = 'One two three. ' * 40
  short = retrieval.shorten(text, 50)
  assert short == 'One two three. One two three. One two three.'
  assert retrieval.shorten('x' * 400, 20).endswith('...')


@needs_wordnet
def test_the_embedded_collection_answers_with_real_citations(tmp_path):
  cfg = config_lib.ToolsetConfig(index_dir=str(tmp_path))
  tools = toolset.Toolset.from_config(cfg, '')
  [paris] = tools.tools['retrieval']('capital of France', toolset.Conversation())
  assert 'capital and largest city of France' in paris
  assert paris.endswith('http://wordnetweb.princeton.edu/perl/webwn?s=Paris')
  [assert_doc] = tools.tools['retrieval']('python assert statement debugging', toolset.Conversation())
  assert assert_doc.endswith('https://docs.python.org/3/search.html?q=assert')


# --- the translator ---

@needs_freedict
@pytest.mark.parametrize('query,want', [
    ('house in French', ['maison']),
    ('good morning in French', ['bonjour']),
    ('how do you say dog in German', ['Hund']),
    ('translate maison to English', ['house']),
    ("what is 'gato' in English", ['cat, jack']),
    ('cat in Spanish', ['gato']),
    ('What is perro in English?', ['dog']),
    ('chien in English', ['dog']),
])
def test_known_words_in_each_installed_pair(query, want):
  assert translator.Translator()(query) == want


@needs_freedict
@pytest.mark.parametrize('query', ['xyzzy in French', 'hello in Klingon', 'hello', '2 + 2',
                                   'in French', "'' in French"])
def test_a_miss_gives_nothing(query):
  assert translator.Translator()(query) == []


def test_without_the_packages_it_says_which_one_once(tmp_path, caplog):
  empty = translator.Translator(str(tmp_path))
  with caplog.at_level('WARNING'):
    assert empty('house in French') == []
    assert empty('dog in French') == []
  warnings = [r.getMessage() for r in caplog.records if 'dict-freedict-eng-fra' in r.getMessage()]
  assert len(warnings) == 1


def test_dictd_numbers():
  assert translator.decode_number('kPS') == (36 * 64 + 15) * 64 + 18  # k=36, P=15, S=18
  assert translator.decode_number('B') == 1


@needs_freedict
def test_dictzip_random_access_equals_gzip(tmp_path):
  """Chunks read alone equal the same bytes of the whole file decompressed by gzip."""
  path = os.path.join(FREEDICT, 'freedict-eng-fra.dict.dz')
  whole = gzip.open(path).read()
  dictzip = translator.DictzipFile(path)
  assert dictzip.chunk_length > 0
  rng = random.Random(0)
  for _ in range(50):
    offset = rng.randrange(len(whole) - 1)
    length = rng.randrange(1, 3 * dictzip.chunk_length)
    assert dictzip.read(offset, length) == whole[offset:offset + length]
  plain = tmp_path / 'plain.gz'
  plain.write_bytes(gzip.compress(b'0123456789'))  # no chunk table: read whole
  assert translator.DictzipFile(str(plain)).read(3, 4) == b'3456'


def test_entries_are_parsed_into_translations():
  entry = translator.parse_entry('Hund /hˈʊnt/ <masc, n, sg>\n [zool.] dog <n>, dawg <n>\n'
                                 '         Note: used to represent American speech\n'
                                 '      "einen Hund abrichten"  - train a dog\n')
  assert entry == translator.Entry('Hund', ('dog', 'dawg'), 1)
  assert translator.parse_entry('gato /ɡˈato/\n1. cat\n2. jack\n').translations == ('cat', 'jack')


# --- configuration and the command line ---

def test_config_errors_name_the_field(tmp_path):
  with pytest.raises(config_lib.ConfigError, match="config.toolset.collections: unknown value 'wiki'"):
    config_lib.ToolsetConfig(collections=('embedded:wiki',))
  with pytest.raises(config_lib.ConfigError, match='config.toolset.snippets_per_call: must be >= 1'):
    config_lib.ToolsetConfig(snippets_per_call=0)
  with pytest.raises(FileNotFoundError, match='config.toolset.collections:'):
    toolset.Toolset.from_config(config_lib.ToolsetConfig(collections=(str(tmp_path / 'no*.jsonl'),)),
                                str(tmp_path))
  with pytest.raises(FileNotFoundError, match='config.toolset.dictionary_dir:'):
    toolset.Toolset.from_config(config_lib.ToolsetConfig(dictionary_dir=str(tmp_path / 'none')),
                                str(tmp_path))


def test_the_repl_prints_each_tool_and_keeps_the_conversation(tools):
  out = io.StringIO()
  lines = ['Nadal tennis\n', 'Nadal tennis\n', '/reset\n', 'Nadal tennis\n', '6 * 7\n', '/quit\n',
           'never\n']
  assert toolset.repl(tools, lines, out) == {'mode': 'toolset', 'queries': 4}
  text = out.getvalue()
  answers = [line for line in text.splitlines() if line.startswith('TS: ')]
  assert [a.split()[-1] for a in answers[:3]] == ["https://example.org/nadal-clay']",
                                                  "https://example.org/nadal']",
                                                  "https://example.org/nadal-clay']"]
  assert answers[3] == "TS: ['42']" and "  calculator: ['42']" in text and 'never' not in text


@pytest.mark.slow
def test_toolset_mode_on_the_command_line(collection, tmp_path):
  command = [sys.executable, '-m', 'lamda_jax.main', '--config', 'configs/tiny.py', '--mode',
             'toolset', '--workdir', str(tmp_path), f'--config.toolset.collections=({collection!r},)']
  result = subprocess.run(command, input='135+7721\ncapital of France\n', capture_output=True,
                          text=True, check=True, timeout=300)
  assert "TS: ['7856']" in result.stdout
  assert 'https://example.org/paris' in result.stdout
  assert json.loads(result.stdout.strip().splitlines()[-1]) == {'mode': 'toolset', 'queries': 2}


# --- HTTP ---

def _client(tools, with_toolset=True):
  def respond(dialogs, seeds=None):
    raise AssertionError('the toolset endpoint never calls the model')
  app = server.make_app(respond, ServeConfig(),
                        toolset.Conversations(tools, capacity=2) if with_toolset else None)
  return Client(app)


def _post(client, payload):
  body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
  response = client.post('/v1/toolset', data=body, content_type='application/json')
  return response.status_code, response.get_json()


def test_toolset_over_http_keeps_each_conversation(tools):
  client = _client(tools)
  assert _post(client, {'query': '135+7721'}) == (200, {'results': ['7856']})
  urls = [_post(client, {'query': 'Nadal tennis', 'conversation_id': cid})[1]['results'][0].split()[-1]
          for cid in ('a', 'a', 'b', '', '')]
  assert urls == ['https://example.org/nadal-clay', 'https://example.org/nadal',
                  'https://example.org/nadal-clay', 'https://example.org/nadal-clay',
                  'https://example.org/nadal-clay']  # '' is a new conversation every time


def test_conversations_are_bounded(tools):
  conversations = toolset.Conversations(tools, capacity=2)
  for cid in ('a', 'b', 'c'):
    conversations('Nadal tennis', cid)
  assert list(conversations.by_id) == ['b', 'c']  # 'a', least recently used, is forgotten
  assert conversations('Nadal tennis', 'a')[0].endswith('nadal-clay')


@pytest.mark.parametrize('payload,status,message', [
    (b'{not json', 400, 'malformed JSON'),
    (b'\xff\xfe', 400, 'not UTF-8'),
    ([1, 2], 400, 'not a JSON object'),
    ({}, 400, 'query: needs a non-empty string'),
    ({'query': 7}, 400, 'query: needs a non-empty string'),
    ({'query': 'x', 'conversation_id': 5}, 400, 'conversation_id: needs a string'),
    ({'query': 'x', 'conversation_id': 'c' * 129}, 400, 'conversation_id: needs a string'),
])
def test_bad_toolset_requests_get_a_4xx_naming_the_problem(tools, payload, status, message):
  code, body = _post(_client(tools), payload)
  assert code == status and message in body['error']


def test_a_server_without_a_toolset_says_so(tools):
  code, body = _post(_client(tools, with_toolset=False), {'query': '1+1'})
  assert code == 404 and 'no toolset' in body['error']
