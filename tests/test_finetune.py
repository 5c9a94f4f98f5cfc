"""`--mode finetune`: task rows, the discriminator learning a rule, starting from a run."""

import dataclasses
import json
import os
import random
import subprocess
import sys

import flax.linen as nn
import jax
import numpy as np
import pytest

from lamda_jax import config as config_lib
from lamda_jax.data import pipeline
from lamda_jax.data.dialog import Turn
from lamda_jax.finetune import formats, tasks
from lamda_jax.model import decoder
from lamda_jax.model.decoder import Decoder
from lamda_jax.serving import scoring
from lamda_jax.training import checkpointing, loop
from lamda_jax.training import trainer as trainer_lib
from tests.configs import tiny_docs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Common words of Python's documentation: single pieces of the tiny tokenizer.
WORDS = ('value function object class return list string number module method type name error '
         'file data table index result').split()


def repeats_a_word(count: int, seed: int):
  """Rated responses where SENSIBLE is 1 iff the response repeats a word of the context."""
  rng = random.Random(seed)
  for i in range(count):
    context = rng.sample(WORDS, 4)
    others = [w for w in WORDS if w not in context]
    sensible = i % 2 == 0
    response = rng.sample(others, 2) + [rng.choice(context if sensible else others)]
    rng.shuffle(response)
    yield {'conversation': f'{seed}-{i}', 'context': [{'speaker': 'A', 'text': ' '.join(context)}],
           'response': {'speaker': 'B', 'text': ' '.join(response)},
           'labels': {'SENSIBLE': int(sensible)}}


def _experiment(tmp_path, records, finetune=None, **train):
  path = tmp_path / 'labels.jsonl'
  path.write_text(''.join(json.dumps(r) + '\n' for r in records))
  config = tiny_docs.get_config()
  config.finetune.update(dict(labels=(str(path),)), **(finetune or {}))
  config.train.update(dict(seq_len=64, batch_size=16, eval_every=0, log_every=50), **train)
  return tasks.finetune_experiment(config_lib.load(config))


def test_task_rows_carry_the_papers_masks(tmp_path):
  records = [
      {'context': [{'speaker': 'A', 'text': 'hello'}], 'response': {'speaker': 'B', 'text': 'hi'},
       'labels': {'SENSIBLE': 1, 'UNSAFE': 0, 'SPECIFIC': 0}},
      {'context': [{'speaker': 'A', 'text': 'hello'}], 'response': {'speaker': 'B', 'text': 'no'},
       'labels': {'SENSIBLE': 0}},
      {'context': [{'speaker': 'A', 'text': 'hello'}], 'response': {'speaker': 'B', 'text': 'ugh'},
       'labels': {'SENSIBLE': 1, 'UNSAFE': 1}},
  ]
  experiment = _experiment(tmp_path, records, finetune={'eval_fraction': 1e-6}, steps=1)
  built = tasks.build(experiment, str(tmp_path))
  rows = {task: source.take(range(len(source))) for task, source in built.train.sources.items()}
  assert set(rows) == {'generator', 'SENSIBLE', 'SPECIFIC', 'UNSAFE'}
  tokenizer = pipeline.tokenizer_for(experiment, str(tmp_path))

  def weighted_pieces(task):
    r = rows[task]
    return sorted(tokenizer.id_to_piece(int(t)) for t in r['targets'][r['loss_weights'] > 0])

  assert weighted_pieces('SENSIBLE') == ['0', '1', '1']  # one rating token per example
  assert weighted_pieces('UNSAFE') == ['0', '1']
  assert weighted_pieces('SPECIFIC') == ['0']
  generator = rows['generator']  # only the sensible and safe response, with its EOS
  assert tokenizer.decode([int(t) for t in generator['targets'][generator['loss_weights'] > 0]]) \
      == 'hi'
  assert (rows['SENSIBLE']['task_ids'][rows['SENSIBLE']['segment_ids'] > 0] ==
          tasks.TASKS.index('SENSIBLE')).all()
  assert built.train.counts['generator'] == 512  # half the mixture; the rest split by attribute
  # With discriminator heads the rating's target is the label itself, 0 or 1.
  heads = experiment.with_fields(finetune={'discriminator': 'heads'})
  built = tasks.build(heads, str(tmp_path))
  for task, want in (('SENSIBLE', [0, 1, 1]), ('UNSAFE', [0, 1]), ('SPECIFIC', [0])):
    r = built.train.sources[task].take(range(len(built.train.sources[task])))
    assert sorted(r['targets'][r['loss_weights'] > 0].tolist()) == want
    rating_token = rows[task]
    assert (r['inputs'] == rating_token['inputs']).all()  # the same text before the rating


def test_labels_that_are_all_bad_are_a_clear_error(tmp_path):
  records = [{'context': [{'speaker': 'A', 'text': 'hello'}],
              'response': {'speaker': 'B', 'text': 'hi'}, 'labels': {'SENSIBLE': True}}] * 3
  experiment = _experiment(tmp_path, records, finetune={'eval_fraction': 1e-6}, steps=1)
  with pytest.raises(config_lib.ConfigError,
                     match=r'config.finetune: no task has training rows .*: 0 rated responses'):
    tasks.build(experiment, str(tmp_path))


def _final_params(experiment, workdir):
  trainer = trainer_lib.set_up(experiment)
  with trainer.activated():
    state, _ = checkpointing.Checkpointer(workdir, experiment.train,
                                          read_only=True).restore_latest(trainer.abstract)
  return state


@pytest.mark.slow
@pytest.mark.parametrize('discriminator, steps', [('rating_token', 800), ('heads', 400)])
def test_discriminator_learns_a_rule_to_auc_above_0_9(tmp_path, discriminator, steps):
  """`--mode finetune` on one device, in a process of its own (eight simulated
  devices on two cores train 2.5 times slower; sharded updates are tested
  against one device in test_training), then scored here on new examples:
  with the paper's rating token and with discriminator heads. (At 400 steps
  the heads measured AUC 0.95 and accuracy 0.91; the rating token AUC 0.93
  but accuracy 0.70: its calibration needs the 800.)"""
  experiment = _experiment(tmp_path, repeats_a_word(20_000, seed=0),
                           finetune={'generator_weight': 0.0, 'discriminator': discriminator},
                           steps=steps, checkpoint_every=steps)
  overrides = [f'--config.finetune.labels=("{tmp_path / "labels.jsonl"}",)',
               f'--config.finetune.discriminator={discriminator}',
               '--config.finetune.generator_weight=0.0', '--config.train.seq_len=64',
               '--config.train.batch_size=16', '--config.train.eval_every=0',
               '--config.train.log_every=50', f'--config.train.steps={steps}',
               f'--config.train.checkpoint_every={steps}']
  trained = subprocess.run(
      [sys.executable, '-m', 'lamda_jax.main', '--config', 'tests/configs/tiny_docs.py',
       '--mode', 'finetune', '--workdir', str(tmp_path), *overrides], cwd=ROOT,
      capture_output=True, text=True, timeout=900, check=False,
      env={**os.environ, 'JAX_PLATFORMS': 'cpu', 'XLA_FLAGS': ''})
  assert trained.returncode == 0, trained.stderr[-3000:]
  held_out = list(repeats_a_word(300, seed=1))  # new contexts and responses
  params = _final_params(experiment, str(tmp_path)).params
  tokenizer = pipeline.tokenizer_for(experiment, str(tmp_path))
  probability = scoring.score(
      params, decoder.for_experiment(experiment), tokenizer,
      [(Turn('A', r['context'][0]['text']),) for r in held_out],
      [r['response']['text'] for r in held_out], ('SENSIBLE',), experiment.train.seq_len)[:, 0]
  sensible = np.array([r['labels']['SENSIBLE'] for r in held_out], bool)
  positive, negative = probability[sensible], probability[~sensible]
  auc = ((positive[:, None] > negative[None, :]).mean() +
         0.5 * (positive[:, None] == negative[None, :]).mean())
  assert auc > 0.9
  assert ((probability >= 0.5) == sensible).mean() > 0.75  # and calibrated near 0.5


def _optimizer_counts(state) -> set[int]:
  """The step counters inside an optax state (the schedule's, the moments')."""
  leaves = jax.tree_util.tree_flatten_with_path(state.opt_state)[0]
  return {int(leaf) for path, leaf in leaves if 'count' in jax.tree_util.keystr(path)}


@pytest.mark.slow
def test_finetuning_starts_from_the_pretrained_parameters(tmp_path):
  pretrain = config_lib.load(tiny_docs.get_config())
  pretrain = dataclasses.replace(pretrain, train=dataclasses.replace(
      pretrain.train, steps=3, checkpoint_every=3, eval_every=0))
  pretrained_dir = tmp_path / 'pretrain'
  loop.run(pretrain, str(pretrained_dir))
  pretrained = _final_params(pretrain, str(pretrained_dir))

  experiment = _experiment(tmp_path, repeats_a_word(50, 0), steps=1, checkpoint_every=1,
                           learning_rate=1e-9, finetune={'init_from': str(pretrained_dir)})
  finetune_dir = tmp_path / 'finetune'
  summary = loop.run(experiment, str(finetune_dir), tasks.build(experiment,
                                                                         str(finetune_dir)),
                      init_from=str(pretrained_dir))
  # It reads text exactly as the pre-trained run did: that run's tokenizer, copied.
  assert ((finetune_dir / 'tokenizer.model').read_bytes() ==
          (pretrained_dir / 'tokenizer.model').read_bytes())
  assert summary['start_step'] == 0
  tuned = _final_params(experiment, str(finetune_dir))
  assert int(tuned.step) == 1  # a fresh run of its own, not a resume of the pre-training
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), tuned.params,
               pretrained.params)
  fresh = nn.unbox(Decoder(experiment.model).init(  # what no init_from would start from
      jax.random.PRNGKey(experiment.train.seed),
      np.zeros((1, experiment.train.seq_len), np.int32))['params'])
  differences = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), fresh, pretrained.params)
  assert max(jax.tree.leaves(differences)) > 1e-3
  # The optimizer started fresh (one update counted) unless asked to keep it.
  assert _optimizer_counts(pretrained) == {3} and _optimizer_counts(tuned) == {1}
  kept_dir = tmp_path / 'finetune_kept'
  loop.run(experiment, str(kept_dir), tasks.build(experiment, str(kept_dir)),
            init_from=str(pretrained_dir), keep_optimizer_state=True)
  kept = _final_params(experiment, str(kept_dir))
  assert int(kept.step) == 1 and _optimizer_counts(kept) == {4}
  # Discriminator heads added to the pre-trained run: the trunk is read, the
  # heads start from this run's initialisation, and there is no optimizer
  # state for them to keep.
  heads = experiment.with_fields(finetune={'discriminator': 'heads'})
  heads_dir = tmp_path / 'finetune_heads'
  loop.run(heads, str(heads_dir), tasks.build(heads, str(heads_dir)), init_from=str(pretrained_dir))
  with_heads = _final_params(heads, str(heads_dir)).params
  trunk = {name: value for name, value in with_heads.items() if name != 'attribute_heads'}
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), trunk, pretrained.params)
  fresh_heads = nn.unbox(decoder.for_experiment(heads).init(
      jax.random.PRNGKey(heads.train.seed),
      np.zeros((1, heads.train.seq_len), np.int32))['params'])['attribute_heads']
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
               with_heads['attribute_heads'], fresh_heads)
  with pytest.raises(config_lib.ConfigError, match='keep_optimizer_state: .*attribute_heads'):
    loop.run(heads, str(tmp_path / 'heads_kept'), tasks.build(heads, str(heads_dir)),
             init_from=str(pretrained_dir), keep_optimizer_state=True)
  # A workdir whose tokenizer is not the pre-trained run's is refused.
  other_dir = tmp_path / 'finetune_other'
  other_dir.mkdir()
  (other_dir / 'tokenizer.model').write_bytes(b'not the same tokenizer')
  with pytest.raises(config_lib.ConfigError, match='config.finetune.init_from: .* differs'):
    tasks.build(experiment, str(other_dir))


def test_the_research_task_weighs_the_research_lines(tmp_path):
  """Stage two without labels: the research rows are exactly research_examples'."""
  transcripts = [[{'speaker': 'A', 'text': f'what is {i} plus 2?'},
                  {'speaker': 'LAMDA-BASE', 'text': 'five'},
                  {'speaker': 'LAMDA-RESEARCH', 'text': f'TS, {i}+2'},
                  {'speaker': 'TS', 'text': str(i + 2)},
                  {'speaker': 'LAMDA-RESEARCH', 'text': f'User, {i + 2}.'}] for i in range(20)]
  path = tmp_path / 'research.jsonl'
  path.write_text(''.join(json.dumps({'fact': f'{i}+2', 'transcript': t}) + '\n'
                          for i, t in enumerate(transcripts)))
  experiment = _experiment(tmp_path, [], finetune={
      'generator_weight': 0.0, 'discriminator_weight': 0.0, 'research': (str(path),),
      'research_weight': 1.0, 'eval_fraction': 1e-6}, steps=1)
  built = tasks.build(experiment, str(tmp_path))
  assert set(built.train.sources) == {'research'}
  source = built.train.sources['research']
  rows = source.take(range(len(source)))
  tokenizer = pipeline.tokenizer_for(experiment, str(tmp_path))
  weighted = rows['targets'][rows['loss_weights'] > 0].tolist()
  want = []
  for transcript in transcripts:
    for example in formats.research_examples(tokenizer, [Turn(**t) for t in transcript], 64):
      want += [t for t, w in zip(example.tokens, example.loss_weights) if w]
  assert sorted(weighted) == sorted(want)
  assert (rows['task_ids'][rows['segment_ids'] > 0] == tasks.TASKS.index('research')).all()


def test_research_weight_needs_research_data():
  config = tiny_docs.get_config()
  config.finetune.research_weight = 0.5
  with pytest.raises(config_lib.ConfigError, match='config.finetune.research: is needed'):
    config_lib.load(config)
