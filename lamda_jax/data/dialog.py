"""The one text form of a dialog, shared by pre-training, fine-tuning and chat.

Each turn is `<speaker>: <text>` and turns are separated by newlines:

    A: How are you doing today?
    B: im doing good

Speakers are kept as the data names them (chitchat's anonymous senders become
A, B, ... in order of appearance).
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Turn:
  speaker: str
  text: str


def render_turn(turn: Turn) -> str:
  return f'{turn.speaker}: {turn.text}'


def render(turns) -> str:
  return '\n'.join(render_turn(turn) for turn in turns)
