"""Fine-tuning data: rated responses -> generator and discriminator rows, mixed by task.

Every rated attribute of a response is one discriminator example (its task is
the attribute, so loss and accuracy are reported per attribute). A response
rated SENSIBLE 1 and not UNSAFE 1 is also a generator example: the generator
learns only from responses known to be sensible and safe, as LaMDA's
generator is fine-tuned on filtered data. Each task is packed on its own and
the step-indexed mixture sampler draws tasks by weight; pre-training rows can
stay in the mixture (task 'lm') against forgetting.
"""

import dataclasses
import hashlib
import os

from absl import logging
import numpy as np

from lamda_jax import attributes
from lamda_jax.config import ConfigError, ExperimentConfig
from lamda_jax.data import builders, dialog, packed, packing, pipeline
from lamda_jax.data.sampler import MixtureSampler
from lamda_jax.finetune import formats, labels, weak_labels

TASKS = ('lm', 'generator') + attributes.NAMES + ('research',)  # task ids, in this order


def task_examples(records, tokenizer, seq_len: int, bad,
                  discriminator: str = 'rating_token') -> dict[str, list[packing.Example]]:
  """Task name -> examples; a response too long for a row is reported, not trained on."""
  examples = {task: [] for task in TASKS[1:]}
  for record in records:
    context, response = record.context, record.response.text
    try:
      for attribute, label in record.labels.items():
        examples[attribute].append(formats.discriminator_example(
            tokenizer, context, response, attribute, label, seq_len, TASKS.index(attribute),
            discriminator))
      if record.labels.get('SENSIBLE') == 1 and record.labels.get('UNSAFE', 0) == 0:
        examples['generator'].append(formats.generator_example(
            tokenizer, context, response, seq_len, TASKS.index('generator')))
    except formats.TooLong:
      bad.add(record.origin, f'response too long for seq_len {seq_len}')
  return examples


def task_weights(experiment: ExperimentConfig, tasks_with_rows) -> dict[str, float]:
  cfg = experiment.finetune
  rated = [t for t in tasks_with_rows if t in attributes.BY_NAME]
  weights = {'generator': cfg.generator_weight} if 'generator' in tasks_with_rows else {}
  weights.update({a: cfg.discriminator_weight / len(rated) for a in rated})
  return {task: weight for task, weight in weights.items() if weight > 0}


def label_splits(experiment: ExperimentConfig, workdir: str, field: str, patterns) -> dict:
  """{split: [RatedResponse]} of label files (or the embedded weak labels),
  prepared as a TFDS dataset (labels.LamdaLabels) and split by conversation."""
  if not patterns:
    raise ValueError(f'config.{field}: no label files given')
  paths = [pipeline.process_zero_first('weak labels', lambda: weak_labels.export(
      os.path.join(workdir, 'corpora'))) if pattern == 'embedded:chitchat_weak' else pattern
           for pattern in patterns]
  files = builders.expand_paths(field, paths)
  tfds_dir = experiment.data.tfds_dir or os.path.join(workdir, 'tfds')
  data = experiment.data
  return pipeline.process_zero_first('prepare labels', lambda: labels.prepare_labels(
      field, files, tfds_dir, experiment.finetune.eval_fraction, data.beam_runner,
      data.beam_options))


def research_splits(experiment: ExperimentConfig, bad) -> dict:
  """{split: [(origin, transcript)]} of `finetune.research`'s files, split by
  each record's fact (or its first turn) as every held-out split is; bad
  lines are counted into `bad`."""
  cfg = experiment.finetune
  splits = {split: [] for split in builders.SPLITS}
  for path in builders.expand_paths('finetune.research', cfg.research):
    for origin, record, transcript in dialog.read_jsonl(path, formats.parse_research, bad):
      key = str(record.get('fact') or dialog.render(transcript[:1]))
      splits['validation' if builders.held_out(key, cfg.eval_fraction) else 'train'].append(
          (origin, transcript))
  return splits


def generator_splits(experiment: ExperimentConfig, bad) -> dict:
  """{split: [RatedResponse without labels]} of `finetune.generator_data`
  (e.g. filter's kept responses), split by conversation (else by context) so
  the candidates of one context stay together; bad lines are counted into `bad`."""
  cfg = experiment.finetune
  splits = {split: [] for split in builders.SPLITS}
  for path in builders.expand_paths('finetune.generator_data', cfg.generator_data):
    for origin, record, (context, response) in dialog.read_jsonl(path, labels.parse_exchange, bad):
      key = str(record.get('conversation') or dialog.render(context))
      splits['validation' if builders.held_out(key, cfg.eval_fraction) else 'train'].append(
          labels.RatedResponse(context, response, {}, origin, key))
  if not splits['train']:
    raise ConfigError(f'config.finetune.generator_data: {", ".join(cfg.generator_data)} hold no '
                      f'responses to train on (did the filter keep none?)')
  return splits


def packed_task(workdir: str, task: str, split: str, examples, seq_len: int) -> packed.PackedRows:
  """A task's rows, packed onto disk as pre-training's are, under a name that
  hashes the examples: a rerun on the same data reads them, changed data
  writes anew."""
  digest = hashlib.sha256(str(seq_len).encode())
  for example in examples:
    digest.update(np.asarray(example.tokens, np.int32).tobytes() + b'|' +
                  np.asarray(example.loss_weights, np.float32).tobytes() +
                  f'|{example.task_id};'.encode())
  stem = os.path.join(workdir, 'packed', f'finetune-{task}-{split}-{digest.hexdigest()[:16]}')
  pipeline.process_zero_first(f'pack {task} {split}', lambda: packed.is_written(stem) or (
      packed.write_shard(stem, packing.pack_rows(examples, seq_len))))
  return packed.PackedRows([stem], seq_len)


def build(experiment: ExperimentConfig, workdir: str) -> pipeline.Datasets:
  cfg, seq_len = experiment.finetune, experiment.train.seq_len
  # Rated responses train the discriminators, and the generator unless it has
  # data of its own (filtered responses); with both, it learns from both.
  needs_labels = cfg.discriminator_weight > 0 or (cfg.generator_weight > 0 and
                                                 not cfg.generator_data)
  records = (label_splits(experiment, workdir, 'finetune.labels', cfg.labels)
             if needs_labels or (cfg.labels and cfg.generator_weight > 0) else {})
  bad = builders.BadRecords()
  unlabelled = (generator_splits(experiment, bad)
                if cfg.generator_weight > 0 and cfg.generator_data else {})
  if cfg.init_from:
    pipeline.inherit_tokenizer(experiment, workdir, cfg.init_from, 'finetune.init_from')
  tokenizer = pipeline.tokenizer_for(experiment, workdir)
  rows = {}
  for split in builders.SPLITS:
    in_split = records.get(split, [])
    split_bad = bad if split == 'train' else builders.BadRecords()
    examples = task_examples(in_split, tokenizer, seq_len, split_bad, cfg.discriminator)
    for record in unlabelled.get(split, []):
      try:
        examples['generator'].append(formats.generator_example(
            tokenizer, record.context, record.response.text, seq_len, TASKS.index('generator')))
      except formats.TooLong:
        split_bad.add(record.origin, f'response too long for seq_len {seq_len}')
    rows[split] = {task: packed_task(workdir, task, split, found, seq_len)
                   for task, found in examples.items() if found}
  weights = task_weights(experiment, rows['train'])
  if cfg.research_weight > 0:
    for split, transcripts in research_splits(experiment, bad).items():
      examples = []
      for origin, transcript in transcripts:
        try:
          examples += formats.research_examples(tokenizer, transcript, seq_len,
                                                TASKS.index('research'))
        except formats.TooLong:
          (bad if split == 'train' else builders.BadRecords()).add(
              origin, f'research line too long for seq_len {seq_len}')
      if examples:
        rows[split]['research'] = packed_task(workdir, 'research', split, examples, seq_len)
    if 'research' in rows['train']:
      weights['research'] = cfg.research_weight
  if cfg.pretrain_weight > 0:
    pretraining = pipeline.build(experiment, workdir)
    shares = pretraining.train.counts
    for name in pretraining.train.names:
      weights[f'lm:{name}'] = cfg.pretrain_weight * shares[name] / sum(shares.values())
      rows['train'][f'lm:{name}'] = pretraining.train.sources[name]
    rows['validation'].update({f'lm:{n}': r for n, r in pretraining.eval.sources.items()})
  bad.log('finetune')
  if not weights:
    rated = sum(1 for r in records.get('train', []) if r.labels)
    raise ConfigError(
        f'config.finetune: no task has training rows and a weight above 0: {rated} rated '
        f'responses in the training split of labels {list(cfg.labels)} (bad lines are logged '
        f'above and in bad_records.json); rows skipped here: {bad.counts() or "none"}')
  hosts = pipeline.host_slice(experiment)
  eval_rows = {task: r for task, r in rows['validation'].items() if task in weights}
  if set(eval_rows) != set(weights):
    logging.warning('Held-out fine-tuning data lacks tasks %s; they are not evaluated.',
                    sorted(set(weights) - set(eval_rows)))
  train_rows = {task: rows['train'][task] for task in weights}
  return pipeline.Datasets(
      train=MixtureSampler(train_rows, weights, experiment.train.batch_size,
                           experiment.train.seed, **hosts),
      eval=MixtureSampler(eval_rows, {t: weights[t] for t in eval_rows},
                          experiment.train.batch_size, experiment.train.seed + 1, **hosts),
      packing_efficiency=pipeline.efficiency(train_rows.values()),
      bad_records={'finetune': bad.counts()})


def finetune_experiment(experiment: ExperimentConfig) -> ExperimentConfig:
  """The experiment with the fine-tuning task names, for per-task metrics."""
  return dataclasses.replace(experiment, train=dataclasses.replace(experiment.train, tasks=TASKS))
