"""`--mode eval_grounded`: the paper's groundedness metrics (§6.2, §4.1) on
held-out questions with known answers.

Every question is answered twice by one run: LaMDA-Base alone (its
sample-and-rank reply) and LaMDA-Base + Research (the loop, from that same
draft). For each system, overall and per kind of question:

  accuracy           replies that contain the answer or an accepted alternative
  groundedness       supported replies / replies that make a claim
  informativeness    supported replies / all replies
  citation_accuracy  replies citing the URL of a result that supports them /
                     replies whose claim a result with a URL supports or none does
  calls              toolset calls per question (0 for Base alone)

The paper's human raters are stood in for by rules, each tested:
- words: lowercase words and numbers (`research.words`); a reply's *content*
  is its words less the commonest English words and the question's own words.
- a reply **makes a claim** when it has content.
- a claim is **supported** when one toolset result the loop saw holds every
  number of the content and at least `SUPPORT` of its words. Base alone sees
  no results, so its claims are never supported.
- a reply is **right** when the answer's words occur in it, in order and
  contiguous.
- citations: results without a URL (a calculation) have nothing to cite, so
  claims only they support leave the citation denominator.
Chitchat records are skipped: their answer is a person's reply, not a fact.
Every transcript is written to `grounded_transcripts.jsonl` for people to rate.
"""

import collections
import dataclasses
import itertools
import json
import os

from lamda_jax.config import ExperimentConfig
from lamda_jax.data import dialog
from lamda_jax.data.dialog import Turn
from lamda_jax.finetune import formats
from lamda_jax.grounding import research, research_data, researcher

SUPPORT = 0.8
BATCH = 8  # drafts decoded together


@dataclasses.dataclass(frozen=True)
class Question:
  context: tuple[Turn, ...]
  answer: str
  alternatives: tuple[str, ...] = ()
  kind: str = 'question'
  phrasing: str = ''  # the sentence it was asked in, when known: accuracy per phrasing


def parse_question(record) -> Question:
  """{"context": [turns], "answer", "alternatives"?, "kind"?}, or a research
  transcript record (its turns before LAMDA-BASE are the context)."""
  if isinstance(record, dict) and 'transcript' in record:
    transcript = formats.parse_research(record)
    speakers = [turn.speaker for turn in transcript]
    context = transcript[:speakers.index(research.BASE)] if research.BASE in speakers else ()
    if not context:
      raise ValueError(f'transcript: no turns before {research.BASE}')
  else:
    context = dialog.parse_context(record)
  answer, alternatives = record.get('answer'), record.get('alternatives', [])
  if not isinstance(answer, str) or not research.words(answer):
    raise ValueError('answer: needs a string with a word or number in it')
  if not isinstance(alternatives, list) or not all(isinstance(a, str) for a in alternatives):
    raise ValueError('alternatives: needs a list of strings')
  kind = record.get('kind', 'question')
  if not isinstance(kind, str) or not kind:
    raise ValueError('kind: needs a non-empty string')
  phrasing = record.get('phrasing', '')
  if not isinstance(phrasing, str):
    raise ValueError('phrasing: needs a string')
  return Question(context, answer, tuple(alternatives), kind, phrasing)


def _contains(haystack: list[str], needle: list[str]) -> bool:
  return any(haystack[i:i + len(needle)] == needle
             for i in range(len(haystack) - len(needle) + 1))


def is_right(reply: str, question: Question) -> bool:
  return any(_contains(research.words(reply), research.words(answer))
             for answer in (question.answer,) + question.alternatives)


def content(reply: str, context) -> set[str]:
  asked = set().union(*(research.words(turn.text) for turn in context))
  return research.content_words(reply) - asked


def supports(result: str, claim: set[str]) -> bool:
  """Whether one toolset result holds every number and SUPPORT of the claim's words."""
  held = set(research.words(research.split_url(result)[0]))
  numbers = {word for word in claim if word.isdigit()}
  return bool(claim) and numbers <= held and len(claim & held) >= SUPPORT * len(claim)


def judge(reply: str, citation: str, results, question: Question) -> dict:
  """The rules above for one reply, given the results the loop saw."""
  claim = content(reply, question.context)
  supporting = [result for result in results if supports(result, claim)]
  urls = {research.split_url(result)[1] for result in supporting} - {''}
  return {'right': is_right(reply, question), 'claim': bool(claim),
          'supported': bool(supporting),
          'citable': bool(claim) and (bool(urls) or not supporting),
          'cited': citation in urls}


def summarize(judged: list[dict], calls: list[int]) -> dict:
  """The metrics of one system's judged replies (fractions, None when undefined)."""
  def fraction(count, of):
    return count / of if of else None
  claims = sum(j['claim'] for j in judged)
  supported = sum(j['supported'] for j in judged)
  return {'accuracy': fraction(sum(j['right'] for j in judged), len(judged)),
          'groundedness': fraction(supported, claims),
          'informativeness': fraction(supported, len(judged)),
          'citation_accuracy': fraction(sum(j['cited'] for j in judged if j['citable']),
                                        sum(j['citable'] for j in judged)),
          'calls': fraction(sum(calls), len(calls)), 'questions': len(judged)}


def read_questions(experiment: ExperimentConfig, workdir: str) -> tuple[str, list[Question]]:
  """(the file, its questions less chitchat: at most research.max_questions,
  taken from each kind in turn)."""
  cfg = experiment.research
  path = cfg.questions
  if path.startswith('embedded:'):  # the held-out split, as made or asked anew
    in_run = research_data.embedded_files(experiment, experiment.decode.from_run)['validation']
    path = in_run if os.path.exists(in_run) else research_data.make_embedded(
        experiment, workdir)['validation']
    if cfg.questions == 'embedded:research_new_phrasings':
      path = research_data.write_new_phrasings(path, workdir)
  by_kind = collections.defaultdict(list)
  for _, _, question in dialog.read_jsonl(path, parse_question):
    if question.kind != 'chitchat':
      by_kind[question.kind].append(question)
  # Round robin over the kinds, so a cap keeps every kind in the sample.
  mixed = [q for group in itertools.zip_longest(*by_kind.values()) for q in group if q]
  return path, mixed[:cfg.max_questions]


def run(experiment: ExperimentConfig, workdir: str, tools=None) -> dict:
  """`tools`: the toolset (default: experiment.toolset's)."""
  answerer = researcher.Researcher(experiment, tools=tools)  # a missing run fails first
  path, questions = read_questions(experiment, workdir)
  if not questions:
    raise ValueError(f'config.research.questions: {path} has no questions to ask')
  os.makedirs(workdir, exist_ok=True)
  judged = collections.defaultdict(lambda: collections.defaultdict(list))  # kind -> system -> rows
  calls = collections.defaultdict(lambda: collections.defaultdict(list))
  phrased = collections.defaultdict(lambda: collections.defaultdict(list))  # kind -> phrasing -> (row, calls)
  transcripts = os.path.join(workdir, 'grounded_transcripts.jsonl')
  with open(transcripts, 'w', encoding='utf-8') as out:
    for start in range(0, len(questions), BATCH):
      batch = questions[start:start + BATCH]
      # Padded with empty dialogs: one shape, one compilation.
      drafts = answerer.base.respond([q.context for q in batch] + [()] * (BATCH - len(batch)))
      for question, draft in zip(batch, drafts):
        grounded = answerer.research(question.context, draft)
        seen = [turn.text for turn in grounded.research.transcript
                if turn.speaker == research.TOOLSET and turn.text]
        rows = {'base': judge(draft.reply, '', [], question),
                'research': judge(grounded.reply, grounded.research.citation, seen, question)}
        for kind in (question.kind, 'all'):
          for system, row in rows.items():
            judged[kind][system].append(row)
          calls[kind]['base'].append(0)
          calls[kind]['research'].append(grounded.research.calls)
        if question.phrasing:
          phrased[question.kind][question.phrasing].append((rows['research'],
                                                            grounded.research.calls))
        out.write(json.dumps({'kind': question.kind, 'phrasing': question.phrasing,
                              'answer': question.answer, 'judged': rows, **grounded.to_json()},
                             ensure_ascii=False) + '\n')
  report = {kind: {system: summarize(rows, calls[kind][system]) for system, rows in by.items()}
            for kind, by in judged.items()}
  if phrased:  # Base + Research per kind and phrasing
    report['by_phrasing'] = {
        kind: {phrasing: summarize([row for row, _ in pairs], [n for _, n in pairs])
               for phrasing, pairs in by.items()} for kind, by in phrased.items()}
  summary = {'mode': 'eval_grounded', 'questions': path, 'transcripts': transcripts,
             'events': dict(answerer.events), **report}
  with open(os.path.join(workdir, 'eval_grounded.json'), 'w', encoding='utf-8') as f:
    json.dump(summary, f, indent=1)
  return summary
