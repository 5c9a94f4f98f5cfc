"""`--mode generate`: sample-and-rank for every context of a JSONL file.

Input lines: {"context": [{"speaker", "text"}, ...], ...any other fields}.
Output `DIR/generated.jsonl`: each input record with the chosen `reply`, its
`reply_speaker`, `fallback` and every candidate with its scores, for batch
evaluation; it is valid `--mode filter` input as it is. A bad
input line stops the run naming file:line and field, before any decoding.
"""

import json
import os

from lamda_jax.data import dialog

BATCH = 8  # dialogs decoded together (x num_candidates rows)


def run(responder, contexts_path: str, workdir: str) -> dict:
  if not contexts_path:
    raise ValueError('config.decode.contexts: the JSONL of contexts to answer is required')
  records = list(dialog.read_jsonl(contexts_path, dialog.parse_context))
  os.makedirs(workdir, exist_ok=True)
  output = os.path.join(workdir, 'generated.jsonl')
  fallbacks, speaker = 0, responder.config.model_speaker
  with open(output, 'w', encoding='utf-8') as f:
    for start in range(0, len(records), BATCH):
      batch = records[start:start + BATCH]
      # The last batch is padded with empty dialogs: one shape, one compilation.
      dialogs = [r[2] for r in batch] + [()] * (BATCH - len(batch))
      for (origin, record, _), decision in zip(batch, responder.respond(dialogs)):
        fallbacks += decision.fallback
        f.write(json.dumps({**record, 'origin': origin, 'reply_speaker': speaker,
                            **decision.to_json()}) + '\n')
  return {'mode': 'generate', 'contexts': len(records), 'fallbacks': fallbacks,
          'output': output}
