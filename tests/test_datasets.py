"""TFDS builders on local files, the corpus readers, and the mixture pipeline."""

import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from lamda_jax import config as config_lib
from lamda_jax.config import SourceConfig
from lamda_jax.data import builders, corpora, packed, pipeline
from tests.configs import tiny_docs


def _dialog(i, *texts):
  return {'id': f'conversation-{i}', 'turns': [{'speaker': 'AB'[j % 2], 'text': t}
                                              for j, t in enumerate(texts)]}


def _write_jsonl(path, lines):
  with open(path, 'wb') as f:
    for line in lines:
      f.write(line if isinstance(line, bytes) else (json.dumps(line) + '\n').encode())
  return str(path)


def _prepare(tmp_path, kind, path, eval_fraction=0.25):
  return builders.prepare('source', SourceConfig(kind, 1.0, (path,)), [path],
                          str(tmp_path / 'tfds'), eval_fraction)


def test_each_bad_dialog_record_is_reported_with_file_and_line(tmp_path):
  path = _write_jsonl(tmp_path / 'dialogs.jsonl', [
      _dialog(0, 'hi', 'hello'),
      b'{"turns": [oops\n',
      b'{"turns": [{"speaker": "A", "text": "caf\xe9"}]}\n',
      {'turns': []},
      {'turns': [{'speaker': 'A'}]},
      {'turns': [{'speaker': 'A', 'text': '   '}]},
      ['not', 'an', 'object'],
      {'id': 'no-turns'},
      _dialog(1, 'how are you', 'fine'),
      b'[' * 100_000 + b']' * 100_000 + b'\n',  # RecursionError inside the JSON decoder
      b'{"turns": [{"speaker": "A", "text": "half a pair \\ud83d"}]}\n',  # a lone surrogate
      {'turns': [{'speaker': 'A', 'text': 'deep', 'x': [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}]},
      {'turns': [{'speaker': 'A', 'text': 'bell\x07 and back\x08space'}]},
  ])
  source = _prepare(tmp_path, 'dialogs', path, eval_fraction=1e-6)
  assert source.bad_records.to_json() == {
      'malformed JSON (Expecting value)': [f'{path}:2'],
      'invalid UTF-8 (byte 40)': [f'{path}:3'],  # the é of caf\xe9
      'empty dialog': [f'{path}:4'],
      'turn 0 lacks a "speaker" or "text" string': [f'{path}:5'],
      'turn 0 has empty text': [f'{path}:6'],
      'not a JSON object': [f'{path}:7'],
      'missing "turns" list': [f'{path}:8'],
      'JSON nested deeper than 32 levels': [f'{path}:10', f'{path}:12'],
      'a lone surrogate U+D83D in a string': [f'{path}:11'],
  }
  records = dict(source.records('train'))
  assert records == {f'{path}:1': {'speakers': ['A', 'B'], 'texts': ['hi', 'hello']},
                     f'{path}:9': {'speakers': ['A', 'B'], 'texts': ['how are you', 'fine']},
                     # the rule for control characters: each becomes a space
                     f'{path}:13': {'speakers': ['A'], 'texts': ['bell  and back space']}}
  # The report is kept with the prepared data and comes back on the next load.
  assert _prepare(tmp_path, 'dialogs', path, 1e-6).bad_records.counts()['empty dialog'] == 1


def test_documents_from_jsonl_and_text_files(tmp_path):
  jsonl = _write_jsonl(tmp_path / 'docs.jsonl', [{'text': 'first'}, {'text': ''}, {'title': 'x'}])
  (tmp_path / 'essay.txt').write_text('A whole file\nis one document.\n')
  (tmp_path / 'latin1.txt').write_bytes(b'caf\xe9')
  config = SourceConfig('documents', 1.0, (str(tmp_path / '*.txt'), jsonl))
  paths = builders.expand_paths('data.sources.docs.paths', config.paths)
  source = builders.prepare('docs', config, paths, str(tmp_path / 'tfds'), 1e-6)
  texts = sorted(record['text'] for _, record in source.records('train'))
  assert texts == ['A whole file\nis one document.\n', 'first']
  assert source.bad_records.to_json() == {
      'invalid UTF-8 (byte 3)': [f'{tmp_path}/latin1.txt:1'],
      'missing or empty "text"': [f'{jsonl}:2', f'{jsonl}:3']}


def test_split_is_by_conversation_and_stable(tmp_path):
  path = _write_jsonl(tmp_path / 'd.jsonl', [_dialog(i, f'q{i}', f'a{i}') for i in range(400)])
  source = _prepare(tmp_path, 'dialogs', path, eval_fraction=0.25)
  held = {record['texts'][0] for _, record in source.records('validation')}
  kept = {record['texts'][0] for _, record in source.records('train')}
  assert len(held) + len(kept) == 400 and not held & kept
  assert 0.18 < len(held) / 400 < 0.32
  assert held == {f'q{i}' for i in range(400) if builders.held_out(f'conversation-{i}', 0.25)}


def test_editing_the_files_prepares_the_data_anew(tmp_path):
  path = _write_jsonl(tmp_path / 'd.jsonl', [_dialog(0, 'hi', 'yo')])
  assert len(_prepare(tmp_path, 'dialogs', path, 1e-6).splits['train']) == 1
  _write_jsonl(tmp_path / 'd.jsonl', [_dialog(0, 'hi', 'yo'), _dialog(1, 'and', 'more')])
  assert len(_prepare(tmp_path, 'dialogs', path, 1e-6).splits['train']) == 2


class ToyRegisteredCorpus(tfds.core.GeneratorBasedBuilder):
  """A registered TFDS dataset, standing in for any public one (wiki40b, c4, ...)."""
  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
        {'content': tfds.features.Text(), 'id': np.int64}))

  def _split_generators(self, dl_manager):
    return {'train': self._generate_examples(0, 8), 'validation': self._generate_examples(8, 10)}

  def _generate_examples(self, start, stop):  # pylint: disable=arguments-differ
    for i in range(start, stop):
      yield i, {'content': f'article {i}', 'id': i}


def test_registered_tfds_dataset_by_name(tmp_path):
  ToyRegisteredCorpus(data_dir=str(tmp_path), file_format='array_record').download_and_prepare()
  config = SourceConfig('tfds', 1.0, tfds_name='toy_registered_corpus', text_field='content')
  source = builders.prepare('toy', config, [], str(tmp_path), 0.1)
  assert sorted(r['text'] for _, r in source.records('validation')) == ['article 8', 'article 9']
  assert len(list(source.records('train'))) == 8


def test_missing_corpus_path_is_a_clear_error(tmp_path):
  config = tiny_docs.get_config()
  config.data.sources.python_docs.paths = (str(tmp_path / 'nowhere' / '*.jsonl'),)
  with pytest.raises(FileNotFoundError, match=r"config\.data\.sources\.python_docs\.paths: "
                                              r"'.*nowhere/\*\.jsonl' matches no file"):
    pipeline.open_sources(config_lib.load(config), str(tmp_path))


def test_wordnet_reader_on_real_format(tmp_path):
  (tmp_path / 'data.noun').write_text(
      '  1 This software and database is being provided to you, the LICENSEE, by\n'
      '08932568 15 n 04 Paris 0 City_of_Light 0 French_capital 0 capital_of_France 0 019 @ '
      '08524735 n 0000 | the capital and largest city of France  \n')
  (tmp_path / 'data.adj').write_text(
      '00001740 00 a 01 able(a) 0 005 = 05207437 n 0000 | having the necessary means  \n')
  assert list(corpora.wordnet_glosses(str(tmp_path))) == [
      ('data.adj:00001740', 'able: having the necessary means'),
      ('data.noun:08932568', 'Paris, City of Light, French capital, capital of France: '
                             'the capital and largest city of France')]


def test_fortunes_reader_on_real_format(tmp_path):
  (tmp_path / 'fortunes').write_text('A day for firm decisions!\n%\nB_\x08o_\x08l_\x08d.\n%\n')
  (tmp_path / 'fortunes.dat').write_bytes(b'\x00\x01')
  assert list(corpora.fortunes(str(tmp_path))) == [('fortunes:0', 'A day for firm decisions!'),
                                                   ('fortunes:1', 'Bold.')]


def test_unavailable_debian_corpus_names_its_package(tmp_path, monkeypatch):
  monkeypatch.setattr(corpora, 'WORDNET_DIR', str(tmp_path / 'absent'))
  monkeypatch.setattr(corpora.wordnet_glosses, '__defaults__', (str(tmp_path / 'absent'),))
  with pytest.raises(corpora.CorpusUnavailable, match='install the Debian package wordnet-base'):
    corpora.export('wordnet', str(tmp_path))


def test_chitchat_export_groups_messages_into_turns(tmp_path):
  with open(corpora.export('chitchat', str(tmp_path)), encoding='utf-8') as f:
    records = [json.loads(line) for line in f]
  assert len(records) == 7168
  speakers = [turn['speaker'] for turn in records[0]['turns']]
  assert speakers[:2] == ['A', 'B']
  assert all(a != b for a, b in zip(speakers, speakers[1:]))  # one sender per turn


def _dialog_pipeline(tmp_path, write=True, seq_len=128, dialogs=()):
  """(experiment, sources, tokenizer, path) for a dialogs file with one turn
  too long for a row, and `dialogs` more."""
  path = str(tmp_path / 'd.jsonl')
  if write:
    _write_jsonl(path, [_dialog(0, 'short', 'reply'), _dialog(1, 'word ' * 400, 'reply'),
                        *dialogs])
  config = tiny_docs.get_config()
  config.data.sources = {'talk': {'kind': 'dialogs', 'weight': 1.0, 'paths': (path,),
                                  'tfds_name': '', 'text_field': 'text'}}
  config.data.eval_fraction = 1e-6
  config.model.vocab_size = 300
  config.train.seq_len = seq_len
  experiment = config_lib.load(config)
  sources = pipeline.open_sources(experiment, str(tmp_path))
  return experiment, sources, pipeline.tokenizer_for(experiment, str(tmp_path), sources), path


def test_pipeline_reports_turns_too_long_for_a_row(tmp_path):
  _, sources, tokenizer, path = _dialog_pipeline(tmp_path)
  bad = builders.BadRecords()
  kept = list(pipeline.examples(sources['talk'], 'train', tokenizer, 128, bad))
  assert bad.to_json() == {'a turn is longer than seq_len 128': [f'{path}:2 (turn 0)']}
  assert tokenizer.decode(list(kept[0].tokens[:-1])) == 'A: short\nB: reply'


def _all_rows(rows):
  return rows.take(range(len(rows)))


def test_packed_rows_on_disk_replay_rows_and_reports(tmp_path):
  experiment, sources, _, path = _dialog_pipeline(tmp_path)
  tokenizer_path = pipeline.tokenizer_path(experiment, str(tmp_path))
  first = pipeline.packed_split(experiment, sources['talk'], 'train', tokenizer_path,
                                str(tmp_path))
  assert len(os.listdir(tmp_path / 'packed')) == 1
  assert first.index and os.path.exists(first.index)  # written for the next start to read
  _, reopened, _, _ = _dialog_pipeline(tmp_path, write=False)  # a restart: same files and workdir
  second = pipeline.packed_split(experiment, reopened['talk'], 'train', tokenizer_path,
                                 str(tmp_path))
  for field, values in _all_rows(first).items():
    np.testing.assert_array_equal(values, _all_rows(second)[field])
  assert first.identity == second.identity
  assert reopened['talk'].bad_records.to_json() == {
      'a turn is longer than seq_len 128': [f'{path}:2 (turn 0)']}
  shorter = dataclasses.replace(experiment, train=dataclasses.replace(experiment.train,
                                                                      seq_len=64))
  pipeline.packed_split(shorter, reopened['talk'], 'train', tokenizer_path, str(tmp_path))
  assert len(os.listdir(tmp_path / 'packed')) == 2  # another seq_len, another folder


def _sharded(tmp_path):
  """A dialogs source cut into shards of 3 records, and its jobs."""
  tmp_path.mkdir(exist_ok=True)
  more = [_dialog(i, f'question {i} ' * (i % 5 + 1), f'answer {i}') for i in range(2, 13)]
  experiment, sources, tokenizer, _ = _dialog_pipeline(tmp_path, dialogs=more, seq_len=32)
  tokenizer_path = pipeline.tokenizer_path(experiment, str(tmp_path))
  jobs = pipeline.shard_jobs(sources['talk'], 'train', tokenizer_path, 32, str(tmp_path),
                             records_per_shard=3)
  return experiment, sources['talk'], tokenizer, jobs


def test_shards_hold_every_example_in_order(tmp_path):
  experiment, source, tokenizer, jobs = _sharded(tmp_path)
  assert len(jobs) == 5  # 13 records, 3 per shard
  pipeline.write_shards(jobs)
  rows = _all_rows(packed.PackedRows([job.stem for job in jobs], 32))
  unpacked = [tuple(rows['targets'][r][rows['segment_ids'][r] == s])
              for r in range(len(rows['targets']))
              for s in range(1, rows['segment_ids'][r].max() + 1)]
  every = [e.tokens for e in pipeline.examples(source, 'train', tokenizer, 32,
                                               builders.BadRecords())]
  assert unpacked == every


def test_a_split_index_replaces_reading_every_shards_metadata(tmp_path):
  _, _, _, jobs = _sharded(tmp_path)
  pipeline.write_shards(jobs)
  stems = [job.stem for job in jobs]
  by_shard = packed.PackedRows(stems, 32)
  bad_records = by_shard.bad_records()
  index = str(tmp_path / 'index.json')
  packed.write_index(index, stems)
  # An index of other shards is not used: these stems' own files are read.
  assert len(packed.PackedRows(stems[:-1], 32, index=index)) == sum(by_shard.shard_rows[:-1])
  for stem in stems:  # from here on only the index can say what the shards hold
    os.remove(stem + '.json')
  indexed = packed.PackedRows(stems, 32, index=index)
  assert (indexed.identity, indexed.tokens) == (by_shard.identity, by_shard.tokens)
  assert indexed.shard_rows.tolist() == by_shard.shard_rows.tolist()
  assert indexed.bad_records() == bad_records != {}
  for field, values in _all_rows(indexed).items():
    np.testing.assert_array_equal(values, _all_rows(by_shard)[field])


@pytest.mark.slow
def test_beam_direct_runner_writes_the_same_shards(tmp_path):
  _, _, _, jobs = _sharded(tmp_path / 'here')
  pipeline.write_shards(jobs)
  _, _, _, beam_jobs = _sharded(tmp_path / 'beam')
  pipeline.write_shards(beam_jobs, 'DirectRunner', ('--direct_num_workers=2',
                                                     '--direct_running_mode=multi_processing'))
  for here, there in zip(jobs, beam_jobs):
    assert (open(here.stem + '.array_record', 'rb').read() ==
            open(there.stem + '.array_record', 'rb').read())
    mine, theirs = (json.loads(open(job.stem + '.json').read()) for job in (here, there))
    assert mine['sha256'] == theirs['sha256'] and mine['rows'] == theirs['rows']
    # bad records name their file:line on either path
    assert list(mine['bad_records']) == list(theirs['bad_records'])
  assert any(json.loads(open(job.stem + '.json').read())['bad_records'] for job in beam_jobs)


def test_built_datasets_mix_and_hold_out(tmp_path):
  experiment = config_lib.load(tiny_docs.get_config())
  built = pipeline.build(experiment, str(tmp_path))
  assert 0.9 < built.packing_efficiency <= 1.0
  batch = built.train.batch(0)
  assert batch['targets'].shape == (experiment.train.batch_size, experiment.train.seq_len)
  assert set(built.eval.sources) == {'python_docs'}
  train_rows = {row.tobytes() for row in _all_rows(built.train.sources['python_docs'])['targets']}
  assert not any(row.tobytes() in train_rows
                 for row in _all_rows(built.eval.sources['python_docs'])['targets'])
  assert os.path.exists(tmp_path / 'corpora' / 'python_docs.jsonl')


@pytest.mark.slow
def test_beam_preparation_equals_the_in_process_one(tmp_path):
  """Same records in the same splits, same bad records by file:line, over two files."""
  paths = [_write_jsonl(tmp_path / f'part{k}.jsonl', [
      *(_dialog(f'{k}-{i}', f'hello {i}', f'hi {k}') for i in range(12)),
      b'{"turns": [oops\n', b'[' * 5000 + b']' * 5000 + b'\n', {'turns': []}]) for k in range(2)]
  config = SourceConfig('dialogs', 1.0, tuple(paths))

  def prepared(where, **beam):
    source = builders.prepare('talk', config, paths, str(tmp_path / where), 0.3, **beam)
    records = {split: sorted(source.records(split)) for split in builders.SPLITS}
    return records, {reason: sorted(origins)
                     for reason, origins in source.bad_records.to_json().items()}

  here = prepared('here')
  there = prepared('beam', beam_runner='DirectRunner')
  assert here == there
  assert all(here[0][split] for split in builders.SPLITS)
  assert here[1]['empty dialog'] == [f'{paths[0]}:15', f'{paths[1]}:15']
  with pytest.raises(ValueError, match='a split got no records'):
    builders.prepare('talk', config, paths, str(tmp_path / 'empty'), 1e-9,
                     beam_runner='DirectRunner')
