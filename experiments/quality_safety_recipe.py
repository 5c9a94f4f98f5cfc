"""The paper's quality-and-safety recipe (§6.1) in one command, at any scale.

  python -m experiments.quality_safety_recipe --config configs/tiny.py --workdir runs/recipe

1. pre-train (`pretrain/`);
2. fine-tune the discriminators on rated responses (`finetune.labels`), from 1;
3. generate candidates for contexts of the rated data's *training* split with
   the pre-trained model (`generate/generated.jsonl`);
4. filter them with the discriminators (`filter/filtered.jsonl`: the paper's
   2.5M -> 800K step);
5. fine-tune the generator on the kept responses, the discriminators staying
   in the mixture, from 2 (`generator/`);
6. train an independent judge: pre-trained from another seed
   (`judge_pretrain/`) and fine-tuned on the same rated data (`judge/`), so
   no system is judged by the run that ranked or filtered its replies;
7. answer the same *held-out* contexts with the pre-trained model (PT ranking,
   by likelihood), the discriminator-ranked model (2, sample-and-rank) and the
   generator-fine-tuned model (5, sample-and-rank); the discriminators of 2
   and the independent judge of 6 judge every chosen reply,
   alt-profanity-check gives an independent safety view, and each system's
   replies go to a rating sheet for people (`evaluate/<system>/`).

`results.json` and `results.md` compare the three systems; every stage's
artefacts and the exact config stay under the workdir.
"""

import dataclasses
import json
import os

from absl import flags

from experiments import outputs
from lamda_jax import config as config_lib
from lamda_jax.finetune import tasks
from lamda_jax.serving import evaluation, filtering, generate, runs
from lamda_jax.serving import responder as responder_lib
from lamda_jax.training import loop

_CONTEXTS = flags.DEFINE_integer('contexts', 64, 'Training contexts to generate candidates for.')
_HELD_OUT = flags.DEFINE_integer('held_out', 32, 'Held-out contexts the systems answer.')

SYSTEMS = (  # (name, the stage whose run answers, ranking)
    ('pre-trained (PT ranking)', 'pretrain', 'pt'),
    ('discriminator-ranked', 'discriminators', 'lamda'),
    ('generator fine-tuned', 'generator', 'lamda'),
)
ATTRIBUTES = ('SENSIBLE', 'SPECIFIC', 'INTERESTING', 'UNSAFE')


def _contexts(records, count: int):
  """The first `count` distinct contexts of rated records, in order."""
  return list({record.context: None for record in records if record.context})[:count]


def _write_contexts(path: str, contexts):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w', encoding='utf-8') as f:
    for context in contexts:
      f.write(json.dumps({'context': [dataclasses.asdict(turn) for turn in context]}) + '\n')
  return path


def _pretrain_and_rate(experiment, pretrain_dir: str, discriminators_dir: str):
  """Stages 1 and 2: pre-train, then fine-tune the discriminators on the rated
  data from it. -> (the pre-training experiment, the discriminators' one)."""
  # Pre-training has no discriminators: with heads (finetune.discriminator =
  # 'heads') they are added when the discriminators are fine-tuned from it.
  pretrained = experiment.with_fields(finetune={'discriminator': 'rating_token'})
  loop.run(pretrained, pretrain_dir)
  rated = tasks.finetune_experiment(experiment.with_fields(
      finetune={'generator_weight': 0.0, 'init_from': pretrain_dir}))
  loop.run(rated, discriminators_dir, tasks.build(rated, discriminators_dir),
           init_from=pretrain_dir)
  return pretrained, rated


def run(experiment: config_lib.ExperimentConfig, workdir: str, contexts: int = 64,
        held_out: int = 32) -> dict:
  stage = {name: os.path.join(workdir, name) for name in
           ('pretrain', 'discriminators', 'generate', 'filter', 'generator', 'judge_pretrain',
            'judge', 'evaluate')}
  outputs.write_config(workdir, experiment)
  pretrained, rated = _pretrain_and_rate(experiment, stage['pretrain'], stage['discriminators'])

  splits = tasks.label_splits(rated, stage['discriminators'], 'finetune.labels',
                              rated.finetune.labels)
  held_out_contexts = _contexts(splits['validation'], held_out)
  # Conversations are split, but one context ("Hi there!") can open several:
  # none that the systems are judged on is ever generated for.
  unseen = set(_contexts(splits['validation'], len(splits['validation'])))
  training_contexts = _contexts([r for r in splits['train'] if r.context not in unseen], contexts)
  sampling = pretrained.with_fields(decode={'from_run': stage['pretrain'], 'ranking': 'pt'})
  generated = generate.run(
      responder_lib.Responder(sampling),
      _write_contexts(os.path.join(stage['generate'], 'contexts.jsonl'), training_contexts),
      stage['generate'])
  filtered = filtering.run(experiment.with_fields(filter={
      'candidates': generated['output'], 'from_run': stage['discriminators']}), stage['filter'])

  tuned = tasks.finetune_experiment(experiment.with_fields(finetune={
      'init_from': stage['discriminators'],
      'generator_data': (os.path.join(stage['filter'], 'filtered.jsonl'),)}))
  loop.run(tuned, stage['generator'], tasks.build(tuned, stage['generator']),
           init_from=stage['discriminators'])

  # Another seed draws other initial weights and another order of the data.
  _pretrain_and_rate(experiment.with_fields(train={'seed': experiment.train.seed + 1}),
                     stage['judge_pretrain'], stage['judge'])
  judges = {'judged': runs.open_run(experiment, stage['discriminators'], 'the recipe\'s judge'),
            'independent': runs.open_run(experiment, stage['judge'], 'the independent judge')}
  systems = {}
  for name, answering, ranking in SYSTEMS:
    answering_experiment = (pretrained if answering == 'pretrain' else experiment).with_fields(
        decode={'from_run': stage[answering], 'ranking': ranking})
    folder = os.path.join(stage['evaluate'], answering)
    systems[name] = evaluation.sampled_reply_rates(
        responder_lib.Responder(answering_experiment), held_out_contexts, folder, judges,
        experiment.train.seq_len)
  result = {'generated': generated, 'filtered': filtered,
            'training_contexts': len(training_contexts), 'held_out_contexts': len(held_out_contexts),
            'judge': stage['discriminators'], 'independent_judge': stage['judge'],
            'systems': systems}
  outputs.write_results(workdir, result, markdown(result))
  return result


def markdown(result: dict) -> str:
  """The systems side by side: rates of the chosen replies by each judge."""
  lines = [f'Held-out contexts: {result["held_out_contexts"]}; candidates generated for '
           f'{result["training_contexts"]} training contexts, {result["filtered"].get("kept", 0)} '
           f'of {result["filtered"]["candidates"]} kept by the filter. Judges: the recipe\'s '
           f'discriminators (`{result["judge"]}`, which ranked and filtered), an independent '
           f'judge (`{result["independent_judge"]}`: another seed, the same rated data) and '
           'alt-profanity-check.', '',
           '| system | judge | sensible | specific | interesting | SSI | unsafe | '
           'unsafe (profanity-check) | fallback |', '|---|---|---|---|---|---|---|---|---|']
  for name, rates in result['systems'].items():
    profanity = rates.get('sampled/profanity_check/chosen_unsafe_rate', float('nan'))
    for judge in ('judged', 'independent'):
      judged = [rates.get(f'{judge}/{a}/chosen_rate', float('nan')) for a in ATTRIBUTES]
      ssi = sum(judged[:3]) / 3
      lines.append(f'| {name} | {"recipe" if judge == "judged" else judge} | ' +
                   ' | '.join(f'{v:.2f}' for v in (*judged[:3], ssi, judged[3], profanity)) +
                   f' | {rates["sampled/fallback_rate"]:.2f} |')
  return '\n'.join(lines) + '\n'


if __name__ == '__main__':
  outputs.main(lambda experiment, workdir: run(experiment, workdir, _CONTEXTS.value,
                                               _HELD_OUT.value)['systems'], 'runs/recipe')
