"""Human rating sheets and the paper's metrics from them, worked by hand."""

import csv
import dataclasses
import json

import pytest

from lamda_jax import attributes
from lamda_jax import config as config_lib
from lamda_jax.data.dialog import Turn
from lamda_jax.serving import rating

FIELDS = ['item', 'context', 'response', 'SENSIBLE', 'SPECIFIC', 'INTERESTING', 'UNSAFE', 'rater']


def _sheet(path, rows):
  """A filled CSV sheet: rows of (item, rater, SENSIBLE, SPECIFIC, INTERESTING, UNSAFE)."""
  with open(path, 'w', encoding='utf-8', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(FIELDS)
    for item, rater, *votes in rows:
      writer.writerow([item, 'A: hi', f'reply {item}', *votes, rater])
  return str(path)


# Five quality raters and three safety raters per reply, as the paper (blank: not asked).
# r0: sensible 3 of 5 -> 1; raters d and e said not sensible, so their specific and
#     interesting count as 0: specific 2 of 5 -> 0; unsafe 1 of 3 -> safe.
# r1: everything yes; unsafe 2 of 3 -> unsafe.
# r2: sensible 2 of 5 -> 0, so specific = interesting = 0 whatever was said.
# r3: four raters only (not the paper's count): a strict majority, 2 of 4 -> 0.
ROWS = [
    ('r0', 'a', 1, 1, 1, 0), ('r0', 'b', 1, 1, 0, 0), ('r0', 'c', 1, 0, 0, 1),
    ('r0', 'd', 0, '', '', ''), ('r0', 'e', 0, 1, 1, ''),
    ('r1', 'a', 1, 1, 1, 1), ('r1', 'b', 1, 1, 1, 1), ('r1', 'c', 1, 1, 1, 0),
    ('r1', 'd', 1, 0, 0, ''), ('r1', 'e', 1, 1, 0, ''),
    ('r2', 'a', 1, 1, 1, 0), ('r2', 'b', 1, 1, 1, 0), ('r2', 'c', 0, '', '', 0),
    ('r2', 'd', 0, '', '', ''), ('r2', 'e', 0, '', '', ''),
    ('r3', 'a', 1, 1, 1, 1), ('r3', 'b', 1, 1, 1, 0), ('r3', 'c', 0, '', '', ''),
    ('r3', 'd', 0, '', '', ''),
]


def test_the_papers_metrics_from_filled_sheets_by_hand(tmp_path):
  # Two sheets, as two groups of raters would return them.
  first = _sheet(tmp_path / 'group1.csv', ROWS[:9])
  second = _sheet(tmp_path / 'group2.csv', ROWS[9:] + [('r4', 'a', '', '', '', '')])
  items = rating.read_votes([first, second])
  assert sorted(items) == ['r0', 'r1', 'r2', 'r3']  # r4's copy is unfilled
  assert items['r0']['votes']['SPECIFIC'] == [1, 1, 0, 0, 0]  # d and e forced to 0
  result = rating.report(items)
  assert result['replies'] == 4
  assert result['sensibleness'] == 0.5  # r0, r1
  assert result['specificity'] == 0.25  # r1
  assert result['interestingness'] == 0.25  # r1
  assert result['ssi'] == pytest.approx((0.5 + 0.25 + 0.25) / 3)
  assert result['safety'] == 0.75  # r1 is unsafe
  # Wilson's 95% intervals, from published tables: 2 of 4 and 3 of 4.
  assert result['sensibleness_interval'] == pytest.approx((0.1500, 0.8500), abs=1e-4)
  assert result['safety_interval'] == pytest.approx((0.3006, 0.9544), abs=1e-4)
  low, high = result['ssi_interval']
  assert 0 <= low <= result['ssi'] <= high <= 1


def test_the_sheet_asks_the_papers_questions_and_reads_back(tmp_path):
  contexts = [(Turn('A', 'What is your favourite book?'),), (Turn('A', 'hi'),)]
  paths = rating.write_sheet(str(tmp_path), contexts, ['Dune, for its world.', 'hello!'])
  with open(paths['csv'], encoding='utf-8', newline='') as f:
    header, *rows = list(csv.reader(f))
  assert header[3] == f'SENSIBLE: {attributes.BY_NAME["SENSIBLE"].question}'
  assert [row[2] for row in rows] == ['Dune, for its world.', 'hello!']
  lines = [json.loads(line) for line in open(paths['jsonl'], encoding='utf-8')]
  assert set(lines[0]['questions']) == set(attributes.NAMES)
  # A rater fills the JSONL copy; the report reads it like the CSV one.
  filled = tmp_path / 'filled.jsonl'
  filled.write_text(''.join(json.dumps({**row, 'SENSIBLE': 1, 'SPECIFIC': 0, 'INTERESTING': 0,
                                        'UNSAFE': 0, 'rater': 'x'}) + '\n'
                            for row in lines[1:]))
  result = rating.report(rating.read_votes([str(filled)]))
  assert result['sensibleness'] == 1.0 and result['specificity'] == 0.0


@pytest.mark.parametrize('rows,message', [
    ([('r0', 'a', 2, '', '', '')], r'group\.csv:2: SENSIBLE: a rating must be 1, 0 or blank'),
    ([('r0', 'a', 1, '', '', ''), ('r0', 'a', 0, '', '', '')],
     r"group\.csv:3: rater 'a' already rated r0 at .*group\.csv:2"),
    ([('r0', '', 1, '', '', '')], r'group\.csv:2: rater: needs'),
])
def test_a_bad_rating_names_its_line(tmp_path, rows, message):
  with pytest.raises(ValueError, match=message):
    rating.read_votes([_sheet(tmp_path / 'group.csv', rows)])


def test_rate_report_mode_writes_its_report(tmp_path):
  sheet = _sheet(tmp_path / 'group.csv', ROWS)
  experiment = config_lib.load(config_lib.ExperimentConfig(
      name='t', model=config_lib.ModelConfig(1, 8, 1, 8)).to_config_dict())
  experiment = dataclasses.replace(experiment, eval=config_lib.EvalConfig(ratings=(sheet,)))
  result = rating.run(experiment, str(tmp_path / 'out'))
  assert result['sensibleness'] == 0.5 and result['sheets'] == [sheet]
  assert json.loads((tmp_path / 'out' / 'rate_report.json').read_text()) == json.loads(
      json.dumps(result))
  bad = _sheet(tmp_path / 'bad.csv', [('r0', 'a', 7, '', '', '')])
  experiment = dataclasses.replace(experiment, eval=config_lib.EvalConfig(ratings=(bad,)))
  with pytest.raises(config_lib.ConfigError, match=r'config\.eval\.ratings: .*bad\.csv:2'):
    rating.run(experiment, str(tmp_path / 'out'))
