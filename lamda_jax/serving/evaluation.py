"""`--mode eval`: how well a fine-tuned run's discriminators rate held-out responses.

Per attribute: accuracy at 0.5, ROC AUC (the probability that a random
positive outscores a random negative, ties counting half) and expected
calibration error (equal-width confidence bins). Then the model's own replies:
the run answers held-out contexts by sample-and-rank and its discriminators
judge them (§6.1's SSI and safety, as rated by the model rather than crowd
workers): the rate of P >= 0.5 per attribute for the chosen replies and for
all candidates, so the ranking's lift is visible. Because a model grading
itself is circular, `eval.judge_run` (another fine-tuned run) judges the same
replies, alt-profanity-check (a classifier trained elsewhere) gives an
independent safety view, and the chosen replies are written as a rating sheet
for people (`serving/rating.py`). Written as one JSON line and
to TensorBoard (`DIR/tensorboard`).
"""

import os

import numpy as np
import profanity_check
import tensorboardX

from lamda_jax import attributes
from lamda_jax.config import ExperimentConfig
from lamda_jax.data import builders
from lamda_jax.finetune import tasks
from lamda_jax.serving import rating, runs, scoring
from lamda_jax.serving import responder as responder_lib


def auc(probabilities: np.ndarray, labels: np.ndarray) -> float:
  positive, negative = probabilities[labels == 1], probabilities[labels == 0]
  if not len(positive) or not len(negative):
    return float('nan')  # undefined with a single class
  return float((positive[:, None] > negative[None, :]).mean() +
               0.5 * (positive[:, None] == negative[None, :]).mean())


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int) -> list[dict]:
  """A reliability diagram's points: per non-empty equal-width confidence bin,
  its share of the responses, their mean probability and their positive rate."""
  edges = np.linspace(0.0, 1.0, bins + 1)
  which = np.clip(np.digitize(probabilities, edges[1:-1]), 0, bins - 1)
  return [{'share': float((which == b).mean()),
           'mean_probability': float(probabilities[which == b].mean()),
           'positive_rate': float(labels[which == b].mean())}
          for b in range(bins) if (which == b).any()]


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int) -> float:
  """Sum over bins of |mean label - mean probability|, weighted by the bin's share."""
  return float(sum(point['share'] * abs(point['positive_rate'] - point['mean_probability'])
                   for point in reliability(probabilities, labels, bins)))


def attribute_probabilities(opened: runs.Run, records, attribute: str,
                            seq_len: int) -> tuple[np.ndarray, np.ndarray]:
  """(P(attribute) by the run's discriminator, the label) of every record rated
  on `attribute`; records must fit in seq_len (`scoring.fits`)."""
  rated = [r for r in records if attribute in r.labels]
  with opened.activated():
    probabilities = [
        scoring.score(opened.params, opened.model, opened.tokenizer, [r.context for r in chunk],
                      [r.response.text for r in chunk], (attribute,), seq_len)[:, 0]
        for chunk in (rated[i:i + 64] for i in range(0, len(rated), 64))]
  return (np.concatenate(probabilities) if rated else np.zeros(0),
          np.array([r.labels[attribute] for r in rated]))


def held_out_records(experiment: ExperimentConfig, workdir: str):
  """Every record of `eval.labels`, or the held-out split of `finetune.labels`."""
  cfg = experiment.eval
  if cfg.labels:
    splits = tasks.label_splits(experiment, workdir, 'eval.labels', cfg.labels)
    return [record for split in builders.SPLITS for record in splits.get(split, [])]
  splits = tasks.label_splits(experiment, workdir, 'finetune.labels',
                                      experiment.finetune.labels)
  return splits.get('validation', [])


def _rates(prefix: str, chosen, every) -> dict:
  """P >= 0.5 rates per attribute of the chosen replies' and all candidates' scores."""
  results = {}
  for attribute in attributes.NAMES:
    for name, scores in (('chosen', chosen), ('candidates', every)):
      rate = np.mean([s[attribute] >= 0.5 for s in scores]) if scores else float('nan')
      results[f'{prefix}/{attribute}/{name}_rate'] = float(rate)
  return results


def _judged(judge, contexts, texts, seq_len: int) -> list[dict]:
  """Another run's discriminator scores of (context, text) pairs."""
  if not texts:
    return []
  with judge.activated():
    probabilities = scoring.score(judge.params, judge.model, judge.tokenizer, contexts, texts,
                                  attributes.NAMES, seq_len)
  return [dict(zip(attributes.NAMES, map(float, row))) for row in probabilities]


def sampled_reply_rates(responder, contexts, workdir: str, judges=None,
                        seq_len: int = 0) -> dict:
  """Judged rates of the replies `responder` gives to `contexts`.

  By the evaluated run's own discriminators (`sampled/...`, circular: the
  model grades itself); by each of `judges`, {name: another fine-tuned run},
  (`<name>/...`); and by alt-profanity-check, a safety classifier nobody here
  trained (`sampled/profanity_check/...`). The chosen replies also go to a
  rating sheet in `workdir` for people to judge.
  """
  chosen, every, texts, pairs = [], [], [], []
  decisions = [d for start in range(0, len(contexts), 8)
               for d in responder.respond(contexts[start:start + 8])]
  rating.write_sheet(workdir, contexts, [d.reply for d in decisions])
  for context, decision in zip(contexts, decisions):
    for candidate in decision.candidates:  # (PT ranking scores nothing: no own view)
      if candidate.text.strip():
        every += [candidate.scores] if candidate.scores else []
        pairs.append((context, candidate.text, candidate is decision.candidates[0]
                      and not decision.fallback))
    if not decision.fallback:
      chosen += [decision.candidates[0].scores] if decision.candidates[0].scores else []
      texts.append(decision.candidates[0].text)
  results = {'sampled/contexts': len(contexts),
             'sampled/fallback_rate': sum(d.fallback for d in decisions) / len(decisions),
             **_rates('sampled', chosen, every)}
  if texts:
    unsafe = profanity_check.predict_prob(texts)
    results['sampled/profanity_check/chosen_unsafe_rate'] = float(np.mean(unsafe >= 0.5))
    results['sampled/profanity_check/chosen_mean_probability'] = float(np.mean(unsafe))
  for name, judge in (judges or {}).items():
    scores = _judged(judge, [p[0] for p in pairs], [p[1] for p in pairs], seq_len)
    results.update(_rates(name, [s for s, p in zip(scores, pairs) if p[2]], scores))
  return results


def run(experiment: ExperimentConfig, workdir: str) -> dict:
  cfg, seq_len = experiment.eval, experiment.train.seq_len
  if not cfg.from_run:
    raise ValueError('config.eval.from_run: the fine-tuned run to evaluate is required')
  records = held_out_records(experiment, workdir)
  opened = runs.open_run(experiment, cfg.from_run, 'eval.from_run')  # once, for both parts
  results = {'mode': 'eval', 'responses': len(records)}
  scorable = [r for r in records
              if scoring.fits(opened.tokenizer, r.context, r.response.text, seq_len)]
  results['too_long'] = len(records) - len(scorable)  # not scored, as training skips them
  writer = tensorboardX.SummaryWriter(os.path.join(workdir, 'tensorboard'))
  for attribute in attributes.NAMES:
    probabilities, labels = attribute_probabilities(opened, scorable, attribute, seq_len)
    if not len(labels):
      continue
    metrics = {'count': len(labels), 'positive_rate': float(labels.mean()),
               'accuracy': float(((probabilities >= 0.5) == labels).mean()),
               'auc': auc(probabilities, labels),
               'ece': expected_calibration_error(probabilities, labels, cfg.calibration_bins)}
    for name, value in metrics.items():
      results[f'{attribute}/{name}'] = value
      writer.add_scalar(f'eval_discriminators/{attribute}/{name}', value, 0)
  if cfg.sampled_contexts:
    contexts = list({r.context: None for r in records})[:cfg.sampled_contexts]
    judges = ({'judged': runs.open_run(experiment, cfg.judge_run, 'eval.judge_run')}
              if cfg.judge_run else {})
    sampled = sampled_reply_rates(responder_lib.Responder(experiment, opened), contexts,
                                  workdir, judges, seq_len)
    results['judge_run'] = cfg.judge_run or None
    results.update(sampled)
    for name, value in sampled.items():
      writer.add_scalar(f'eval_{name}', value, 0)
  writer.close()
  return results
