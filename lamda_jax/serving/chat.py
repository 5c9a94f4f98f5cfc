"""`--mode chat`: talk to a run's model in the terminal.

Each line is the user's turn; the reply is chosen by sample-and-rank and the
history is kept. Commands: /reset forgets the history, /candidates shows the
last turn's candidates ranked, with their scores and why any were dropped,
/transcript the last turn's research lines (when the research loop answers),
/quit ends (as does end of input, so a scripted chat can be piped in).
"""

import sys

HELP = 'Commands: /reset, /candidates, /transcript, /quit.'


def format_candidates(decision) -> str:
  lines = []
  for rank, candidate in enumerate(decision.candidates, start=1):
    scores = ' '.join(f'{name[:4].lower()}={value:.2f}' for name, value in candidate.scores.items())
    mark = f'  [dropped: {candidate.dropped}]' if candidate.dropped else ''
    lines.append(f'{rank:2d}. {candidate.rank_score:7.3f}  loglik/token='
                 f'{candidate.log_likelihood / max(candidate.num_tokens, 1):6.2f}  {scores}'
                 f'  {candidate.text!r}{mark}')
  if decision.fallback:
    lines.append('(no candidate could be chosen: the fallback reply was given)')
  return '\n'.join(lines)


def format_transcript(decision) -> str:
  """The research loop's transcript of the last turn (a reply answered through it
  has `transcript_text`), with its citation."""
  if decision is None:
    return '(nothing said yet)'
  if not hasattr(decision, 'transcript_text'):
    return '(no research loop: start the chat with --config.research.enabled=True)'
  cited = decision.research.citation
  return decision.transcript_text() + (f'\n(cited: {cited})' if cited else '')


def run(responder, lines=sys.stdin, out=sys.stdout):
  history, last = [], None
  print(f'Chatting as {responder.config.user_speaker}; the model is '
        f'{responder.config.model_speaker}. {HELP}', file=out, flush=True)
  for line in lines:
    text = line.strip()
    if not text:
      continue
    if text == '/quit':
      break
    if text == '/reset':
      history, last = [], None
      print('(history cleared)', file=out, flush=True)
    elif text == '/candidates':
      print(format_candidates(last) if last else '(nothing said yet)', file=out, flush=True)
    elif text == '/transcript':
      print(format_transcript(last), file=out, flush=True)
    elif text.startswith('/'):
      print(f'Unknown command {text!r}. {HELP}', file=out, flush=True)
    else:
      print(f'{responder.config.user_speaker}: {text}', file=out)
      history.append(responder.user_turn(text))
      last = responder.respond([history])[0]
      history.append(responder.reply_turn(last.reply))
      print(f'{responder.config.model_speaker}: {last.reply}', file=out, flush=True)
  return {'mode': 'chat', 'turns': len(history)}
