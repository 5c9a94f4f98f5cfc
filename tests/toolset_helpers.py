"""The small snippet collection and toolset the grounding tests share."""

import json

from lamda_jax import config as config_lib
from lamda_jax.grounding import toolset

SNIPPETS = [
    {'id': 'nadal', 'url': 'https://example.org/nadal', 'title': 'Rafael Nadal',
     'text': 'Rafael Nadal is a Spanish tennis player born on 3 June 1986. He won 22 Grand Slam '
             'titles. He retired in 2024.'},
    {'id': 'nadal-2', 'url': 'https://example.org/nadal-clay', 'title': 'Nadal on clay',
     'text': 'Nadal won the French Open fourteen times, a record for any tennis player.'},
    {'id': 'federer', 'url': 'https://example.org/federer', 'title': 'Roger Federer',
     'text': 'Roger Federer is a Swiss tennis player who won 20 Grand Slam titles.'},
    {'id': 'paris', 'url': 'https://example.org/paris', 'title': 'Paris',
     'text': 'Paris is the capital and largest city of France.'},
]



def make_toolset(folder, snippets=SNIPPETS):
  """A toolset over `snippets`, indexed into `folder`."""
  (folder / 'snippets.jsonl').write_text(''.join(json.dumps(s) + '\n' for s in snippets))
  return toolset.Toolset.from_config(config_lib.ToolsetConfig(
      collections=(str(folder / 'snippets.jsonl'),), index_dir=str(folder / 'index')), '')
