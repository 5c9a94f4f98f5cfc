"""Research dialogs for the embedded default, made by the toolset itself (§6.2).

Four kinds, each a transcript in the research format (`research.py`) whose
toolset results are the real toolset's:

  arithmetic   "what is 135 plus 7721?"   TS, 135+7721 -> TS: 7856 -> User, 7856.
  lookup       "what is a tarragon?"      TS, tarragon -> the snippet -> User, <its fact>
  translation  "how do you say dog in French?"  TS, dog in French -> User, chien.
  chitchat     a chitchat turn             answered at once: User, <the true next turn>

A lookup whose first result is not the entry it was made from asks again (the
toolset's next-snippet rule) until the entry comes, so the data holds
dialogs that repeat a query. Questions are split into train and held-out by
the fact behind them (the expression, the entry, the word), never by
phrasing, so no held-out fact is seen in training.
"""

import dataclasses
import json
import os
import random
import re

from lamda_jax.config import ExperimentConfig
from lamda_jax.data import builders, corpora, dialog, pipeline
from lamda_jax.data.dialog import Turn
from lamda_jax.grounding import research, retrieval, toolset, translator

KINDS = ('arithmetic', 'lookup', 'translation', 'chitchat')
_OPERATIONS = (('+', ('plus', 'and', '+')), ('-', ('minus', '-')), ('*', ('times', 'x', '*')),
               ('/', ('divided by', '/')))
MAX_DRAFT_CHARS = 120  # chitchat turns used as drafts: short, so transcripts stay short
# How the training dialogs ask, as people type: many sentences around the
# subject, now and then a greeting or thanks before or after, sometimes a
# capital. A model that saw a few sentences learns where the subject sits in
# them, not to find it (docs/grounding.md: 29% on unseen phrasings after six).
_ARITHMETIC = (
    'what is {}?', 'what is {}', 'how much is {}?', 'calculate {}', '{} = ?',
    'can you tell me what {} is?', 'what does {} equal?', 'solve {}', 'evaluate {}',
    'figure out {} for me', 'tell me {}', 'give me the result of {}', 'what is the answer to {}?',
    'help me with {}', '{}?', 'how much does {} give?', 'do the math: {}', 'result of {}?',
    'could you calculate {}?', 'i need to know {}', 'what will {} be?', 'can you do {}?',
    'quick sum: {}', 'i am stuck on {}', 'how much is {} exactly?', 'i wonder what {} is',
    'what is the value of {}?', 'need the answer for {}', 'mind doing {} for me?', '{} equals?',
    '{} is what?', 'the result of {} please', 'do you know what {} is?', 'what number is {}?',
    'find {}', 'math question: {}', 'my homework says {}, what is the answer?')
_LOOKUP = (
    'what is {}?', 'tell me about {}', 'what does {} mean?', 'do you know what {} is?',
    'what are {}?', 'i have never heard of {}', 'look up {}', 'what do you know about {}?',
    'describe {}', 'give me the meaning of {}', '{}: what is it?', 'what is the meaning of {}?',
    'search for {}', 'info on {}', 'who or what is {}?', '{}?', 'any facts about {}?',
    'is {} a thing?', 'teach me about {}', 'so what is {} anyway?', 'i want to learn about {}',
    'i am curious about {}', 'tell me something about {}', 'what can you tell me about {}?',
    'fill me in on {}', 'i keep hearing about {}', 'never understood {}',
    'how would you describe {}?', 'do you have info on {}?', 'please look into {}',
    'what sort of thing is {}?', 'who is {}?', '{} - what does that mean?',
    'what on earth is {}?', 'i need some background on {}', 'can you find {}?')
_TRANSLATION = (
    'how do you say {} in {}?', 'what is {} in {}?', 'translate {} to {}', 'translate {} into {}',
    '{} in {}?', 'what is the {1} for {0}?', 'how is {} said in {}?', 'in {1}, what is {0}?',
    'say {} in {}', 'what do they call {} in {}?', '{0}: in {1}?', 'the {1} translation of {0}?',
    'i need the {1} for {0}', 'how do {1} speakers say {0}?', '{} to {} please translate',
    'what would {0} be in {1}?', 'give me {0} in {1}', '{1} for {0}?', 'can you translate {0} to {1}?',
    'i want to say {0} in {1}', 'what is {0} called in {1}?', 'in {1} how do i say {0}?',
    'tell me the {1} for {0}', '{0} - {1} translation?')
_OPENERS = ('',) * 6 + ('hey, ', 'hi! ', 'quick question: ', 'so ', 'ok, ', 'hmm, ', 'sorry, ',
                        'one more thing: ', 'hello, ', 'well, ')
_CLOSERS = ('',) * 6 + (' thanks', ' :)', '!', ' thank you', ' lol', ' ok?', ' i forgot',
                        ' haha', ' cheers', ' asap')
# Phrasings no training dialog uses, for asking held-out facts anew
# (`embedded:research_new_phrasings`): the same subjects, other sentences.
NEW_PHRASINGS = {
    'arithmetic': ("what's {}?", 'please work out {}', 'compute {}', 'any idea what {} comes to?',
                   '{} makes how much?', 'what do you get for {}?'),
    'lookup': ('define {}', 'what is meant by {}?', 'can you explain {}?',
               'i would like to know about {}'),
    'translation': ("what's the {1} word for {0}?", 'how would you say {0} in {1}?',
                    '{0} in {1}, please'),
}


def _ask(rng: random.Random, phrasings, *subject: str) -> str:
  """One of `phrasings` around `subject`, as `_ARITHMETIC`'s comment says."""
  question = rng.choice(_OPENERS) + rng.choice(phrasings).format(*subject) + rng.choice(_CLOSERS)
  return question[:1].upper() + question[1:] if rng.random() < 0.3 else question


@dataclasses.dataclass(frozen=True)
class ResearchDialog:
  kind: str
  fact: str  # what the question rests on; the split key
  answer: str  # the reply's key content, for scoring a model's answer
  transcript: tuple[Turn, ...]
  subject: tuple[str, ...] = ()  # what the question's sentence was filled with

  def to_json(self) -> dict:
    return {'kind': self.kind, 'fact': self.fact, 'answer': self.answer,
            'subject': list(self.subject),
            'transcript': [dataclasses.asdict(turn) for turn in self.transcript]}


def _draft(rng: random.Random, guesses, drafts) -> str:
  """LaMDA-Base's draft: one of the ungrounded `guesses` or, as often as each
  of them (when given), any chitchat turn, as a base model's reply can be
  anything; the research lines must follow from the question either way."""
  pick = rng.randrange(len(guesses) + bool(drafts))
  return guesses[pick] if pick < len(guesses) else rng.choice(drafts)


def _dialog(kind, fact, answer, subject, question, draft, steps, reply) -> ResearchDialog:
  """steps: (query, results) pairs, in order."""
  turns = [Turn('A', question), Turn(research.BASE, draft)]
  for query, results in steps:
    turns.append(Turn(research.RESEARCH, f'TS, {query}'))
    turns += [Turn(research.TOOLSET, result) for result in results or ['']]
  turns.append(Turn(research.RESEARCH, f'User, {reply}'))
  return ResearchDialog(kind, fact, answer, tuple(turns), tuple(subject))


def _misspelt(rng: random.Random, number: int) -> str:
  """`number` with one digit doubled, dropped or changed: never `number` itself."""
  digits, at = str(number), rng.randrange(len(str(number)))
  kind = rng.choice(('double', 'drop', 'change') if len(digits) > 1 else ('double', 'change'))
  if kind == 'double':
    return digits[:at + 1] + digits[at:]
  if kind == 'drop':
    return (digits[:at] + digits[at + 1:]).lstrip('0') or '1' + digits
  return digits[:at] + rng.choice([d for d in '123456789' if d != digits[at]]) + digits[at + 1:]


def _arithmetic_guesses(rng: random.Random, a: int, symbol: str, word: str, b: int,
                        value: str) -> tuple[str, str, str]:
  """Three wrong drafts of an arithmetic answer, as a stage-two model drafts
  them (docs/grounding.md): a guess at the result; the question's numbers
  garbled beside a wrong result ("2634*821 *821."); and the expression echoed,
  some copies with a digit wrong, "TS" among them, cut off ("I mean 8218/428
  pt 8218/428 TSTS 9911+428"). No number in a draft is ever the answer, and an
  expression copied from it is right only when the question's own is there
  too: the research lines must come from the question, never `User, <draft>`."""
  result = round(float(value))
  wrong = result + rng.choice((-1, 1)) * rng.randint(1, abs(result) // 3 + 9)
  garbled = rng.choice((f'{a}{symbol}{b}{symbol}{b} is {wrong}.',
                        f'{_misspelt(rng, a)} {word} {b} is {wrong}.',
                        f'{a} {word} {_misspelt(rng, b)} is {wrong}.',
                        f'{a} {word} {b} is {wrong}.'))
  echoes = (lambda: f'{a}{symbol}{b}', lambda: f'{_misspelt(rng, a)}{symbol}{b}',
            lambda: f'{a}{symbol}{_misspelt(rng, b)}', lambda: f'{a} {word} {b}',
            lambda: _misspelt(rng, b), lambda: 'TS')
  while True:
    echo = rng.choice(('', 'I mean ', 'like ', 'what is ', 'Ya, ', 'how much ')) + ' '.join(
        rng.choice(echoes)() for _ in range(rng.randint(2, 6)))
    echo = echo[:rng.randint(len(echo) * 2 // 3, len(echo))].rstrip()
    if value not in re.findall(r'-?\d+', echo):
      return f'I think it is about {wrong}.', garbled, echo


def arithmetic(rng: random.Random, tools: toolset.Toolset, drafts=()) -> ResearchDialog:
  symbol, words = rng.choice(_OPERATIONS)
  a, b = rng.randrange(2, 10_000), rng.randrange(2, 1_000)
  if symbol == '/':
    a = a * b  # whole answers, as people ask
  expression, word = f'{a}{symbol}{b}', rng.choice(words)
  subject = (f'{a} {word} {b}',)
  question = _ask(rng, _ARITHMETIC, *subject)
  results = tools.query(expression, toolset.Conversation())
  value = results[0]  # the calculator's answer comes first
  draft = _draft(rng, _arithmetic_guesses(rng, a, symbol, word, b, value), drafts)
  return _dialog('arithmetic', expression, value, subject, question, draft,
                 [(expression, results)], f'{value}.')


def lookup(rng: random.Random, tools: toolset.Toolset, snippet: retrieval.Snippet,
           drafts=(), max_steps: int = 3) -> ResearchDialog | None:
  """A question about `snippet`'s entry, asked until a result for it comes (its
  URL: a word's senses share one), answered from that result; None if none does."""
  conversation, steps = toolset.Conversation(), []
  for _ in range(max_steps):
    results = tools.query(snippet.title, conversation)
    steps.append((snippet.title, results))
    for result in results:
      text, url = research.split_url(result)
      if url == snippet.url:
        # The definition after `words: `, up to its first clause: what a reply says.
        fact = re.split(r'; |\. ', text.split(': ', 1)[-1])[0].rstrip('.')
        return _dialog('lookup', snippet.url, fact, (snippet.title,),
                       _ask(rng, _LOOKUP, snippet.title),
                       _draft(rng, (f'I am not sure what {snippet.title} is.',), drafts), steps,
                       f'{snippet.title}: {fact}')
  return None


def translation(rng: random.Random, tools: toolset.Toolset, word: str, language: str,
                drafts=()) -> ResearchDialog | None:
  query = f'{word} in {language.capitalize()}'
  outputs = tools.by_tool(query, toolset.Conversation())
  results, found = [r for by_tool in outputs.values() for r in by_tool], outputs['translator']
  if not found:
    return None
  first = found[0].split(', ')[0]
  subject = (word, language.capitalize())
  return _dialog('translation', f'{word}:{language}', first, subject,
                 _ask(rng, _TRANSLATION, *subject),
                 _draft(rng, (f'I do not know the {language.capitalize()} for {word}.',), drafts),
                 [(query, results)], f'{word} in {language.capitalize()} is {first}.')


def chitchat(context: list[Turn], reply: Turn) -> ResearchDialog:
  """A turn that needs no lookup: LAMDA-RESEARCH answers at once with the draft."""
  return ResearchDialog('chitchat', dialog.render(context), reply.text, tuple(context) + (
      Turn(research.BASE, reply.text), Turn(research.RESEARCH, f'User, {reply.text}')))


def english_words(dictionary_dir: str, language: str, count: int, rng: random.Random):
  """`count` single-word headwords of the English -> `language` dictionary."""
  path = os.path.join(dictionary_dir, f'freedict-eng-{translator.LANGUAGES[language]}.index')
  if not os.path.exists(path):
    return []
  with open(path, encoding='utf-8') as f:
    words = [line.split('\t', 1)[0] for line in f
             if line[:1].isalpha() and line.split('\t', 1)[0].isalpha()]
  return rng.sample(words, min(count, len(words)))


def generate(tools: toolset.Toolset, per_kind: int, seed: int = 0):
  """About `per_kind` dialogs of each kind (fewer where a resource is missing)."""
  rng, index = random.Random(seed), tools.index
  conversations = [turns for _, turns in corpora.chitchat_dialogs() if len(turns) > 1]
  drafts = [turn['text'] for turns in conversations for turn in turns
            if len(turn['text']) <= MAX_DRAFT_CHARS]
  for _ in range(per_kind):
    yield arithmetic(rng, tools, drafts)
  made = 0
  for row in rng.sample(range(len(index)), min(len(index), 4 * per_kind)):
    snippet = index.snippet(row)
    made += bool(found := lookup(rng, tools, snippet, drafts))
    if found:
      yield found
    if made == per_kind:
      break
  languages = ('french', 'german', 'spanish')
  for language in languages:
    for word in english_words(tools.dictionary_dir, language, per_kind // len(languages), rng):
      if found := translation(rng, tools, word, language, drafts):
        yield found
  for turns in rng.sample(conversations, min(per_kind, len(conversations))):
    at = rng.randrange(1, len(turns))
    yield chitchat([Turn(t['speaker'], t['text']) for t in turns[max(0, at - 3):at]],
                   Turn(turns[at]['speaker'], turns[at]['text']))


def new_phrasing(record: dict) -> dict:
  """A generated dialog (arithmetic, lookup or translation) as a `--mode
  eval_grounded` question in one of NEW_PHRASINGS, picked by its fact."""
  subject = record.get('subject')
  if not subject or not all(isinstance(part, str) for part in subject):
    raise ValueError('subject: needs the strings the question was made from (dialogs made '
                     'before research_data wrote them cannot be asked anew)')
  phrasing = random.Random(record['fact']).choice(NEW_PHRASINGS[record['kind']])
  return {'kind': record['kind'], 'fact': record['fact'], 'answer': record['answer'],
          'phrasing': phrasing, 'context': [{'speaker': 'A', 'text': phrasing.format(*subject)}]}


def write_new_phrasings(path: str, directory: str) -> str:
  """`path`'s research dialogs other than chitchat, asked in new phrasings,
  into `<directory>/<its name>-new-phrasings.jsonl`; returns that path."""
  out = os.path.join(directory, os.path.basename(path).removesuffix('.jsonl') +
                     '-new-phrasings.jsonl')
  os.makedirs(directory, exist_ok=True)
  with open(f'{out}.tmp', 'w', encoding='utf-8') as f:
    for _, record, _ in dialog.read_jsonl(path, lambda record: record):
      if record.get('kind') in NEW_PHRASINGS:
        f.write(json.dumps(new_phrasing(record), ensure_ascii=False) + '\n')
  os.replace(f'{out}.tmp', out)
  return out


def export(dialogs, directory: str, eval_fraction: float, name: str = 'research') -> dict:
  """Writes `<name>-{train,validation}.jsonl`, split by fact; returns the paths."""
  os.makedirs(directory, exist_ok=True)
  paths = {split: os.path.join(directory, f'{name}-{split}.jsonl')
           for split in ('train', 'validation')}
  files = {split: open(f'{path}.tmp', 'w', encoding='utf-8') for split, path in paths.items()}
  try:
    for item in dialogs:
      split = 'validation' if builders.held_out(item.fact, eval_fraction) else 'train'
      files[split].write(json.dumps(item.to_json(), ensure_ascii=False) + '\n')
  finally:
    for f in files.values():
      f.close()
  for path in paths.values():
    os.replace(f'{path}.tmp', path)
  return paths


def embedded_files(experiment: ExperimentConfig, workdir: str) -> dict[str, str]:
  """Where `embedded:research` for this experiment lives under `workdir`: split -> path.
  The name holds what the dialogs depend on, so a changed setting makes new ones."""
  cfg = experiment.finetune
  name = f'research-{cfg.research_per_kind}-{experiment.train.seed}-{cfg.eval_fraction}'
  return {split: os.path.join(workdir, 'corpora', f'{name}-{split}.jsonl')
          for split in builders.SPLITS}


def make_embedded(experiment: ExperimentConfig, workdir: str) -> dict[str, str]:
  """`embedded_files`, made by the toolset once (by process 0) if absent."""
  paths = embedded_files(experiment, workdir)

  def make():
    if not all(map(os.path.exists, paths.values())):
      tools = toolset.Toolset.from_config(experiment.toolset, workdir)
      name = os.path.basename(paths['train']).removesuffix('-train.jsonl')
      export(generate(tools, experiment.finetune.research_per_kind, experiment.train.seed),
             os.path.dirname(paths['train']), experiment.finetune.eval_fraction, name)
    return paths

  return pipeline.process_zero_first('research dialogs', make)


def resolve_embedded(experiment: ExperimentConfig, workdir: str) -> ExperimentConfig:
  """The experiment with `embedded:research` in `finetune.research` replaced by
  the files the toolset makes for it, once, in `<workdir>/corpora`."""
  cfg = experiment.finetune
  if 'embedded:research' not in cfg.research:
    return experiment
  paths = make_embedded(experiment, workdir)
  research = tuple(p for p in cfg.research if p != 'embedded:research') + tuple(paths.values())
  return dataclasses.replace(experiment, finetune=dataclasses.replace(cfg, research=research))
