"""Crowd labels for fine-tuning, aggregated exactly as the paper does (§5, App. A).

One JSONL line per rated response (`conversation` is optional: responses of
one conversation stay in one split):

  {"conversation": "c17", "context": [{"speaker": "A", "text": "What's up?"}],
   "response": {"speaker": "B", "text": "not much."},
   "labels": {"SENSIBLE": 1, "SPECIFIC": 0}}                  final 0/1 labels, or
   "votes":  {"SENSIBLE": [1, 1, 0, 1, 1], "UNSAFE": [0, 0, 1]}  raw per-rater votes

Votes: SENSIBLE, SPECIFIC and INTERESTING have 5 raters (1 = yes); the label
is 1 when at least 3 say yes. UNSAFE has 3 raters (1 = found a violation of a
safety objective); the response is safe (UNSAFE 0) only when at least 2 of 3
found no violation. Then: not sensible forces specific = interesting = 0, and
not specific forces interesting = 0 (the table in lamda_jax/attributes.py).
Bad lines fail with file:line and field.

Label files are prepared once as a TFDS dataset (`LamdaLabels`, ArrayRecord),
split by conversation, like every other source.
"""

import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds

from lamda_jax import attributes
from lamda_jax.data import builders, dialog


@dataclasses.dataclass(frozen=True)
class RatedResponse:
  context: tuple[dialog.Turn, ...]
  response: dialog.Turn
  labels: dict  # attribute -> 0/1, only the attributes the record rates
  origin: str
  conversation: str  # the split key


def _check_attributes(mapping, field: str):
  if not isinstance(mapping, dict) or not mapping:
    raise ValueError(f'{field}: needs an object of attribute -> value')
  for attribute in mapping:
    if attribute not in attributes.BY_NAME:
      raise ValueError(f'{field}.{attribute}: unknown attribute; expected one of '
                       f'{", ".join(attributes.NAMES)}')


def parse_exchange(record) -> tuple[tuple[dialog.Turn, ...], dialog.Turn]:
  """(context, response) of a record; ValueError names the field."""
  return dialog.parse_context(record), dialog.parse_turn(record.get('response'), 'response')


def parse_record(record) -> tuple[tuple[dialog.Turn, ...], dialog.Turn, dict[str, int]]:
  """(context, response, labels) of one record; ValueError names the field."""
  turns, response = parse_exchange(record)
  if ('labels' in record) == ('votes' in record):
    raise ValueError('needs exactly one of "labels" (final 0/1) or "votes" (per rater)')
  if 'labels' in record:
    _check_attributes(record['labels'], 'labels')
    for attribute, label in record['labels'].items():
      if label not in (0, 1) or isinstance(label, bool):
        raise ValueError(f'labels.{attribute}: must be 0 or 1, got {label!r}')
    return turns, response, attributes.apply_forcing(record['labels'])
  _check_attributes(record['votes'], 'votes')
  for attribute, votes in record['votes'].items():
    raters = attributes.BY_NAME[attribute].raters
    if not isinstance(votes, list) or len(votes) != raters:
      raise ValueError(f'votes.{attribute}: needs {raters} votes, got {votes!r}')
    for vote in votes:
      if vote not in (0, 1) or isinstance(vote, bool):
        raise ValueError(f'votes.{attribute}: every vote must be 0 or 1, got {vote!r}')
  return turns, response, attributes.aggregate_votes(record['votes'])


def read(path: str, bad=None):
  """RatedResponses of a labels file: bad lines are counted into `bad`
  (builders.BadRecords), or without it the first raises dialog.RecordError."""
  for origin, record, (context, response, labels) in dialog.read_jsonl(path, parse_record, bad):
    yield RatedResponse(context, response, labels, origin, str(record.get('conversation', origin)))


UNRATED = -1  # an attribute the record does not rate


class LamdaLabels(builders.LocalBuilder):
  """Rated responses in the schema above (final labels or
  per-rater votes, aggregated as the paper does), split by conversation.

  A bad line is counted by reason and named by file:line with its field (in
  bad_records.json and the log of every run that reads the labels), and the
  rest of the file is used.
  """

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, description=self.__doc__,
                                 features=tfds.features.FeaturesDict({
                                     'origin': tfds.features.Text(),
                                     'conversation': tfds.features.Text(),
                                     'context_speakers': tfds.features.Sequence(tfds.features.Text()),
                                     'context_texts': tfds.features.Sequence(tfds.features.Text()),
                                     'response_speaker': tfds.features.Text(),
                                     'response_text': tfds.features.Text(),
                                     'labels': tfds.features.FeaturesDict(
                                         {a: tfds.features.Scalar(np.int32) for a in attributes.NAMES}),
                                 }))

  @classmethod
  def split_key(cls, key: str, example) -> str:
    return example['conversation']

  @classmethod
  def path_examples(cls, path: str, bad):
    for record in read(path, bad):
      yield record.origin, {
          'origin': record.origin, 'conversation': record.conversation,
          'context_speakers': [t.speaker for t in record.context],
          'context_texts': [t.text for t in record.context],
          'response_speaker': record.response.speaker, 'response_text': record.response.text,
          'labels': {a: record.labels.get(a, UNRATED) for a in attributes.NAMES}}


def prepare_labels(field: str, paths, tfds_dir: str, eval_fraction: float, beam_runner: str = '',
                   beam_options=()) -> dict:
  """Label files prepared (once; on Beam with `beam_runner`) with LamdaLabels
  -> {split: [RatedResponse]}."""
  data_dir = os.path.join(tfds_dir, f'labels-{builders.fingerprint("labels", paths, eval_fraction)}')
  builder = LamdaLabels(paths=paths, eval_fraction=eval_fraction, data_dir=data_dir,
                        file_format='array_record', beam_runner=beam_runner,
                        beam_options=beam_options)
  builders.prepare_once(builder, data_dir, f'Preparing rated responses ({field})').log(
      f'config.{field}')
  splits = {}
  for split, data in builder.as_data_source().items():
    splits[split] = []
    for index in range(len(data)):
      example = {key: builders.decode(value) for key, value in data[index].items()}
      splits[split].append(RatedResponse(
          tuple(dialog.Turn(*turn) for turn in zip(example['context_speakers'],
                                                    example['context_texts'])),
          dialog.Turn(example['response_speaker'], example['response_text']),
          {a: int(v) for a, v in example['labels'].items() if int(v) != UNRATED},
          example['origin'], example['conversation']))
  return splits
