"""`--mode filter`: keep the generated responses the discriminators judge good (§6.1).

LaMDA's SSI and safety discriminators cut 2.5M turns of generated dialog to
800K for generator fine-tuning. Each candidate is scored on all four
attributes by a fine-tuned run's model; kept candidates are written with their
scores to `filtered.jsonl`, and `filter_report.json` counts the candidates,
the kept, and the dropped by reason (a candidate can fail several thresholds).
"""

import collections
import json
import os

from lamda_jax import attributes
from lamda_jax.config import ExperimentConfig
from lamda_jax.data import dialog
from lamda_jax.serving import runs, scoring


def failures(scores: dict[str, float], cfg) -> list[str]:
  """The thresholds of `cfg` (config.filter) a candidate's scores miss, as reasons."""
  reasons = []
  for attribute in attributes.TABLE:
    score, bound = scores[attribute.name], getattr(cfg, attribute.filter_field)
    if not (score >= bound if attribute.filter_keeps_above else score <= bound):
      reasons.append(attribute.failure)
  return reasons


def parse_candidates(record) -> tuple[tuple[dialog.Turn, ...], tuple]:
  """(context, ((suffix, response or None), ...)) of one candidates line.

  A line holds one `response`, or is a `--mode generate` record: every one of
  its `candidates` is a response by its `reply_speaker`, and its origin gets
  `#<index>`. An empty generated candidate is None (counted, not scored).
  ValueError names the field.
  """
  context = dialog.parse_context(record)
  if ('response' in record) == ('candidates' in record):
    raise ValueError('needs exactly one of "response" (one candidate) or "candidates" '
                     '(a --mode generate record)')
  if 'response' in record:
    return context, (('', dialog.parse_turn(record['response'], 'response')),)
  speaker, candidates = record.get('reply_speaker'), record['candidates']
  if not isinstance(speaker, str) or not speaker:
    raise ValueError('reply_speaker: needs the speaker of the generated candidates')
  if not isinstance(candidates, list):
    raise ValueError('candidates: needs a list of {"text": str, ...}')
  responses = []
  for index, candidate in enumerate(candidates):
    if not isinstance(candidate, dict) or not isinstance(candidate.get('text'), str):
      raise ValueError(f'candidates[{index}].text: needs a string')
    text = candidate['text']
    responses.append((f'#{index}', dialog.Turn(speaker, text) if text.strip() else None))
  return context, tuple(responses)


def kept_record(record, response: dialog.Turn, origin: str, scores) -> dict:
  """A kept candidate as generator fine-tuning data (`finetune.generator_data`)."""
  kept = {'context': record['context'], 'response': {'speaker': response.speaker,
                                                     'text': response.text}}
  if 'conversation' in record:
    kept['conversation'] = record['conversation']
  return {**kept, 'origin': origin, 'scores': scores}


def run(experiment: ExperimentConfig, workdir: str) -> dict:
  cfg, seq_len = experiment.filter, experiment.train.seq_len
  if not cfg.candidates or not cfg.from_run:
    raise ValueError('config.filter.candidates and config.filter.from_run are both required')
  candidates = [(origin + suffix, record, context, response)
                for origin, record, (context, responses) in
                dialog.read_jsonl(cfg.candidates, parse_candidates)
                for suffix, response in responses]
  opened = runs.open_run(experiment, cfg.from_run, 'filter.from_run')
  tokenizer = opened.tokenizer
  counts = collections.Counter(candidates=len(candidates))
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'filtered.jsonl'), 'w', encoding='utf-8') as kept:
    for start in range(0, len(candidates), cfg.batch_size):
      batch = []
      for origin, record, context, response in candidates[start:start + cfg.batch_size]:
        if response is None:
          counts['empty response'] += 1
          continue
        if not scoring.fits(tokenizer, context, response.text, seq_len):
          counts[f'too long for seq_len {seq_len}'] += 1
          continue
        batch.append((origin, record, context, response))
      if not batch:
        continue
      with opened.activated():
        probabilities = scoring.score(opened.params, opened.model, tokenizer, [b[2] for b in batch],
                                      [b[3].text for b in batch], attributes.NAMES, seq_len)
      for (origin, record, _, response), row in zip(batch, probabilities):
        scores = dict(zip(attributes.NAMES, map(float, row)))
        reasons = failures(scores, cfg)
        counts.update(reasons)
        if not reasons:
          counts['kept'] += 1
          kept.write(json.dumps(kept_record(record, response, origin, scores)) + '\n')
  report = {'mode': 'filter', 'dropped': counts['candidates'] - counts['kept'], **counts}
  with open(os.path.join(workdir, 'filter_report.json'), 'w', encoding='utf-8') as f:
    json.dump(report, f, indent=1)
  return report
