"""The toolset's calculator (§6.2): "135+7721" -> ["7856"], and [] for anything else.

Safe by construction: a small recursive-descent parser over a whitelist of
tokens evaluates the expression; nothing is ever passed to `eval`, `exec` or
Python's own parser. Everything a hostile query could inflate is bounded
before it costs anything: its length, its tokens, the nesting depth, every
exponent (from the digits its result would have), the magnitude of every
intermediate result, and the wall time. A query it cannot read, or one that
crosses a bound, gets [] and never an exception.

Accepted: + - * / % (modulo) ^ or ** (power), parentheses, decimals,
scientific notation, unary minus, sqrt log (natural) ln log10 log2 exp sin
cos tan abs round, pi and e; and questions wrapping an expression ("what is
12 times 7?", "12 x 7", "7% of 250", "2 to the power of 10", "9 squared").
"""

import math
import re
import time

MAX_CHARS = 200
MAX_TOKENS = 100
MAX_DEPTH = 24  # nested parentheses, unary signs and powers together
MAX_DIGITS = 300  # of any intermediate result (floats stop near 1e308 anyway)
TIME_LIMIT_S = 0.05
SIGNIFICANT_DIGITS = 10
EXACT_DIGITS = 20

FUNCTIONS = {'sqrt': math.sqrt, 'log': math.log, 'ln': math.log, 'log10': math.log10,
             'log2': math.log2, 'exp': math.exp, 'sin': math.sin, 'cos': math.cos,
             'tan': math.tan, 'abs': abs, 'round': round}
CONSTANTS = {'pi': math.pi, 'e': math.e}

# Real mathematical signs beyond ASCII; any other non-ASCII character (a
# look-alike digit or letter) makes the query unreadable.
_SIGNS = str.maketrans({'\u00d7': '*', '\u00f7': '/', '\u2212': '-'})
_QUESTION = re.compile(r"^(?:what(?:'s| is)|whats|how much is|calculate|compute|evaluate)\s+")
_WORDS = ((r'\bmultiplied by\b', '*'), (r'\btimes\b', '*'), (r'\bdivided by\b', '/'),
          (r'\bplus\b', '+'), (r'\bminus\b', '-'), (r'\bto the power of\b', '^'),
          (r'\bsquared\b', '^2'), (r'\bcubed\b', '^3'), (r'\bmod(?:ulo)?\b', '%'),
          (r'\bpercent of\b', '% of'))
_PERCENT_OF = re.compile(r'([0-9.]+(?:e[+-]?[0-9]+)?)\s*%\s*of\b')
_TOKEN = re.compile(r'\s*(?:([0-9]+\.?[0-9]*(?:e[+-]?[0-9]+)?|\.[0-9]+(?:e[+-]?[0-9]+)?)'
                    r'|([a-z][a-z0-9]*)|(\*\*|[-+*/%^(),]))')


class _Unreadable(Exception):
  """The query is not an expression this calculator reads, or crosses a bound."""


def _normalise(query: str) -> str:
  if len(query) > MAX_CHARS:
    raise _Unreadable  # before any work is done on it
  text = query.translate(_SIGNS).strip().lower()
  if not text.isascii() or not text.isprintable():
    raise _Unreadable
  text = _QUESTION.sub('', text.rstrip('?.!= ')).strip()
  for pattern, replacement in _WORDS:
    text = re.sub(pattern, replacement, text)
  return _PERCENT_OF.sub(r'(\1/100)*', text)


def _tokens(text: str) -> list[tuple[str, str]]:
  """(kind, text) pairs: 'number', 'name' or 'op'; 'x' between operands means times."""
  tokens, at = [], 0
  while at < len(text.rstrip()):
    match = _TOKEN.match(text, at)
    if not match:
      raise _Unreadable
    number, name, op = match.groups()
    if name == 'x':
      tokens.append(('op', '*'))
    elif name:
      if name not in FUNCTIONS and name not in CONSTANTS:
        raise _Unreadable
      tokens.append(('name', name))
    else:
      tokens.append(('number', number) if number else ('op', '^' if op == '**' else op))
    at = match.end()
    if len(tokens) > MAX_TOKENS:
      raise _Unreadable
  return tokens


def _checked(value):
  """An intermediate result, refused when it is not finite or too large."""
  if isinstance(value, float) and not math.isfinite(value):
    raise _Unreadable
  if isinstance(value, int) and value.bit_length() > MAX_DIGITS * 3.33:
    raise _Unreadable
  if isinstance(value, float) and abs(value) >= 10.0 ** MAX_DIGITS:
    raise _Unreadable
  return value


def _power(base, exponent):
  if isinstance(base, int) and isinstance(exponent, int) and exponent >= 0:
    if abs(base) > 1 and exponent * math.log10(abs(base)) > MAX_DIGITS:
      raise _Unreadable  # refused before it is computed, not after
    return base ** exponent
  if abs(exponent) > 10 * MAX_DIGITS and abs(base) != 1:
    raise _Unreadable
  if base < 0 and not float(exponent).is_integer():
    raise _Unreadable  # no complex numbers
  return math.pow(base, exponent)


def _divide(a, b):
  if isinstance(a, int) and isinstance(b, int) and b and a % b == 0:
    return a // b  # exact: 10 / 2 is 5, not 5.0
  return a / b


_BINARY = {'+': lambda a, b: a + b, '-': lambda a, b: a - b, '*': lambda a, b: a * b,
           '/': _divide, '%': lambda a, b: a % b}


class _Parser:
  """expression := term (('+' | '-') term)*
  term := unary (('*' | '/' | '%') unary)*
  unary := ('-' | '+') unary | power
  power := atom ('^' unary)?              right-associative, and -2^2 is -4
  atom := number | constant | function '(' expression (',' expression)? ')' | '(' expression ')'
  """

  def __init__(self, tokens, deadline: float):
    self.tokens, self.at, self.depth, self.deadline = tokens, 0, 0, deadline
    self.operations = 0

  def peek(self):
    return self.tokens[self.at] if self.at < len(self.tokens) else ('end', '')

  def take(self, text=None):
    token = self.peek()
    if token[0] == 'end' or (text is not None and token[1] != text):
      raise _Unreadable
    self.at += 1
    return token

  def nested(self, parse):
    self.depth += 1
    if self.depth > MAX_DEPTH or time.monotonic() > self.deadline:
      raise _Unreadable
    try:
      return parse()
    finally:
      self.depth -= 1

  def apply(self, function, *arguments):
    self.operations += 1
    return _checked(function(*arguments))

  def expression(self):
    value = self.term()
    while self.peek() in (('op', '+'), ('op', '-')):
      value = self.apply(_BINARY[self.take()[1]], value, self.term())
    return value

  def term(self):
    value = self.unary()
    while self.peek() in (('op', '*'), ('op', '/'), ('op', '%')):
      value = self.apply(_BINARY[self.take()[1]], value, self.unary())
    return value

  def unary(self):
    if self.peek() in (('op', '-'), ('op', '+')):
      sign = self.take()[1]
      value = self.nested(self.unary)
      return self.apply(lambda v: -v, value) if sign == '-' else value
    return self.power()

  def power(self):
    base = self.atom()
    if self.peek() == ('op', '^'):
      self.take()
      return self.apply(_power, base, self.nested(self.unary))
    return base

  def atom(self):
    kind, text = self.take()
    if kind == 'number':
      return _checked(float(text) if any(c in text for c in '.e') else int(text))
    if kind == 'name' and text in CONSTANTS:
      return CONSTANTS[text]
    if kind == 'name':
      self.take('(')
      arguments = [self.nested(self.expression)]
      if text == 'round' and self.peek() == ('op', ','):
        self.take()
        arguments.append(self.nested(self.expression))
        if not isinstance(arguments[1], int) or not 0 <= arguments[1] <= 15:
          raise _Unreadable
      self.take(')')
      return self.apply(FUNCTIONS[text], *arguments)
    if (kind, text) == ('op', '('):
      value = self.nested(self.expression)
      self.take(')')
      return value
    raise _Unreadable


def format_number(value) -> str:
  """As a person writes it: 7856, 17.5, 0.3333333333, 1.5e+20; integers exact
  up to EXACT_DIGITS digits."""
  if isinstance(value, int) and len(str(abs(value))) <= EXACT_DIGITS:
    return str(value)
  value = float(value)
  if value.is_integer() and abs(value) < 1e15:
    return str(int(value))
  text = f'{value:.{SIGNIFICANT_DIGITS}g}'
  return '0' if text == '-0' else text


def evaluate(query: str):
  """The value of the expression in `query`; ValueError when it has none."""
  try:
    parser = _Parser(_tokens(_normalise(query)), time.monotonic() + TIME_LIMIT_S)
    value = parser.expression()
    if parser.peek()[0] != 'end' or not parser.operations:
      raise _Unreadable  # trailing tokens, or a bare number: nothing was calculated
    return value
  except (_Unreadable, ArithmeticError, ValueError, TypeError):
    raise ValueError(f'not an expression: {query[:40]!r}') from None


def calculate(query: str) -> list[str]:
  """The toolset contract: [the result] or []."""
  try:
    return [format_number(evaluate(query))]
  except ValueError:
    return []
