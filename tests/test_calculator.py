"""The toolset's calculator: hand-computed answers, and hostile input refused quickly."""

import random
import time

import pytest

from lamda_jax.grounding import calculator

# (query, the answer worked out by hand)
HAND_WORKED = [
    ('135+7721', '7856'),  # the paper's example
    ('2 + 3 * 4', '14'),
    ('(2 + 3) * 4', '20'),
    ('10 / 4', '2.5'),
    ('10 / 2', '5'),
    ('7 - 10', '-3'),
    ('-3 + 5', '2'),
    ('--3', '3'),
    ('-2^2', '-4'),  # the power binds tighter than the sign, as written
    ('(-2)^2', '4'),
    ('2^3^2', '512'),  # right-associative: 2^(3^2)
    ('2**10', '1024'),
    ('2^-1', '0.5'),
    ('17 % 5', '2'),
    ('1.5 * 4', '6'),
    ('0.1 + 0.2', '0.3'),
    ('.5 + .25', '0.75'),
    ('1e3 + 1', '1001'),
    ('2.5e-3 * 4', '0.01'),
    ('1 / 3', '0.3333333333'),
    ('2 / 3', '0.6666666667'),
    ('sqrt(144)', '12'),
    ('sqrt(2)', '1.414213562'),
    ('abs(-7.5)', '7.5'),
    ('round(2.675, 1)', '2.7'),
    ('round(7.4)', '7'),
    ('log(e)', '1'),
    ('ln(1)', '0'),
    ('log10(1000)', '3'),
    ('log2(1024)', '10'),
    ('exp(0)', '1'),
    ('sin(0)', '0'),
    ('cos(pi)', '-1'),
    ('2 * pi', '6.283185307'),
    ('what is 12 times 7?', '84'),
    ("what's 3 plus 4", '7'),
    ('How much is 100 divided by 8?', '12.5'),
    ('12 x 7', '84'),
    ('6 × 7', '42'),
    ('9 − 10', '-1'),  # U+2212, the minus sign
    ('7% of 250', '17.5'),
    ('50 percent of 18', '9'),
    ('2 to the power of 10', '1024'),
    ('9 squared', '81'),
    ('3 cubed', '27'),
    ('15 mod 4', '3'),
    ('calculate 6 multiplied by 7', '42'),
    ('what is 1000000 * 1000000?', '1000000000000'),
    ('123456789 * 987654321', '121932631112635269'),  # exact integers
    ('1e20 * 1.5', '1.5e+20'),
    ('2 ^ 0.5', '1.414213562'),
]


@pytest.mark.parametrize('query,want', HAND_WORKED)
def test_hand_worked_answers(query, want):
  assert calculator.calculate(query) == [want]


@pytest.mark.parametrize('query', [
    'hello in French', "Rafael Nadal's age", 'how old is the universe', '', '   ', '42', 'pi',
    '1 +', '(1 + 2', '1 + 2)', '1 2', 'sqrt', 'sqrt(-1)', 'log(0)', '1 / 0', '5 % 0', '0 ^ -1',
    '(-8) ^ (1/3)', 'round(1.5, 99)', 'x', 'apples + oranges',
])
def test_what_is_not_a_calculation_gives_nothing(query):
  assert calculator.calculate(query) == []


HOSTILE = {
    'code injection': ["__import__('os').system('rm -rf /')", 'exec("1")', 'eval("2+2")',
                       '1; import os', 'lambda: 1', 'open("/etc/passwd")', '[1, 2]', '{}'],
    'attribute access': ['(1).__class__', '"".__class__.__mro__', 'sqrt.__globals__', 'e.real'],
    'huge exponents': ['9^9^9^9', '10^100000', '2 ** 99999999999', '(10^100)^(10^100)',
                       'exp(1000000)', '1e999 * 1', '2^0.5^-1000000'],
    'growth by repetition': ['*'.join(['999999999'] * 40), '^'.join(['9'] * 60)],
    'deep nesting': ['(' * 5000 + '1' + ')' * 5000, '-' * 5000 + '1', 'sqrt(' * 500 + '4' + ')' * 500],
    'very long input': ['1+' * 100_000 + '1', '9' * 1_000_000, ' ' * 100_000 + '1+1'],
    'non-ASCII digits and look-alikes': ['١٢ + ٣', '１２ + ３', '2 + 𝟐', 'е + 1', '2 ⁺ 2', '½ + 1'],
    'NUL and control characters': ['1 + 1\x00', '1\x07+1', '2\r\n+2', '\x1b[31m1+1'],
}


@pytest.mark.parametrize('kind', sorted(HOSTILE))
def test_hostile_input_gets_nothing_quickly(kind):
  for query in HOSTILE[kind]:
    start = time.perf_counter()
    assert calculator.calculate(query) == [], query[:60]
    assert time.perf_counter() - start < 0.2, query[:60]


def test_bounds_hold_just_inside_them():
  """The limits refuse what crosses them, not what stays within."""
  assert calculator.calculate('10^299') == ['1e+299']
  assert calculator.calculate('10^301') == []
  assert calculator.calculate('(' * 10 + '1+1' + ')' * 10) == ['2']
  assert calculator.calculate('(' * (calculator.MAX_DEPTH + 1) + '1+1' +
                              ')' * (calculator.MAX_DEPTH + 1)) == []


def test_random_strings_of_its_own_alphabet_never_raise():
  """Two thousand random queries over the calculator's own tokens: each gets a
  list (maybe empty), never an exception, within the time bound."""
  rng = random.Random(0)
  alphabet = list('0123456789.+-*/%^(), ex') + ['sqrt', 'log', 'pi', 'round', '**', 'of', '%']
  for _ in range(2000):
    query = ''.join(rng.choice(alphabet) for _ in range(rng.randrange(1, 40)))
    start = time.perf_counter()
    result = calculator.calculate(query)
    assert isinstance(result, list) and len(result) <= 1, query
    assert time.perf_counter() - start < 0.2, query
