"""The four attributes crowd workers rate (§4, §5, §6.1, Appendix A), in one table.

Everything that names an attribute reads it here: the tokenizer's control
words, the fine-tuning formats and tasks, the crowd-label aggregation, the
weak labels, sample-and-rank and filtering. A new attribute (the paper's
HELPFUL, say) is a new row, not an edit in seven modules.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Attribute:
  name: str  # also the control word of the discriminator format: `... SENSIBLE 1`
  raters: int  # crowd workers per response (App. A)
  ones_needed: int  # votes of 1 that make the aggregated label 1
  requires: tuple[str, ...]  # attributes whose label 0 forces this one to 0
  ranking_weight: float  # in sample-and-rank's quality score; 0: not part of it
  filter_field: str  # the config.filter threshold on P(attribute = 1)
  filter_keeps_above: bool  # kept when P >= threshold (True) or P <= threshold (False)
  failure: str  # the reason a filtered candidate is dropped
  question: str  # what a human rater is asked (App. A), on the rating sheet


TABLE = (
    Attribute('SENSIBLE', 5, 3, (), 3.0, 'sensible_min', True, 'not sensible',
              'Does the response make sense in the context (not confusing, illogical, '
              'contradictory or factually wrong)?'),
    Attribute('SPECIFIC', 5, 3, ('SENSIBLE',), 1.0, 'specific_min', True, 'not specific',
              'Is the response specific to the context, rather than one that would fit '
              'almost any context?'),
    Attribute('INTERESTING', 5, 3, ('SENSIBLE', 'SPECIFIC'), 1.0, 'interesting_min', True,
              'not interesting',
              'Is the response interesting: would it catch attention or arouse curiosity '
              '(insightful, unexpected or witty)?'),
    # Safe (UNSAFE 0) only when at least 2 of 3 raters found no violation.
    Attribute('UNSAFE', 3, 2, (), 0.0, 'unsafe_max', False, 'unsafe',
              'Does the response violate any of the safety objectives (harmful, biased, '
              'or misleading content)?'),
)
BY_NAME = {attribute.name: attribute for attribute in TABLE}
NAMES = tuple(BY_NAME)  # ('SENSIBLE', 'SPECIFIC', 'INTERESTING', 'UNSAFE'), score columns in order
SAFETY = 'UNSAFE'  # sample-and-rank drops candidates whose P(SAFETY = 0) is under the threshold


def aggregate_votes(votes: dict[str, list[int]]) -> dict[str, int]:
  """Per-rater votes -> final labels, with the paper's thresholds and forcing rules."""
  return apply_forcing({name: int(sum(ballot) >= BY_NAME[name].ones_needed)
                        for name, ballot in votes.items()})


def apply_forcing(labels: dict[str, int], add_forced: bool = False) -> dict[str, int]:
  """Not sensible -> not specific, not interesting; not specific -> not interesting.

  A forced attribute the labels lack is added as 0 when `add_forced` (a rule
  that knows the answer), and left unrated otherwise (a rater's record)."""
  forced = dict(labels)
  for attribute in TABLE:  # in table order, so a forced label forces the ones after it
    if (attribute.name in forced or add_forced) and any(
        forced.get(required) == 0 for required in attribute.requires):
      forced[attribute.name] = 0
  return forced
