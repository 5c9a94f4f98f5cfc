"""Discriminator scores: P(rating=1) from the softmax over the two rating tokens."""

import flax.linen as nn
import jax
import numpy as np
import pytest

from lamda_jax import attributes
from lamda_jax.config import ModelConfig
from lamda_jax.data import corpora
from lamda_jax.data import tokenizer as tokenizer_lib
from lamda_jax.data.dialog import Turn
from lamda_jax.model.decoder import Decoder
from lamda_jax.serving import scoring
from tests import reference_scoring

SEQ_LEN = 48


@pytest.fixture(scope='module')
def tokenizer(tmp_path_factory):
  path = tmp_path_factory.mktemp('tokenizer') / 'sp.model'
  return tokenizer_lib.train(list(corpora.python_docs().values())[:30], 800, str(path))


@pytest.fixture(scope='module', params=['rating_token', 'heads'])
def setup(tokenizer, request):
  """The rating-token readout, and discriminator heads (biased apart, so each
  attribute's score differs)."""
  heads = len(attributes.NAMES) if request.param == 'heads' else 0
  model = Decoder(ModelConfig(num_layers=2, d_model=32, num_heads=2, head_dim=16, d_ff=64,
                              vocab_size=800, dtype='float32'), attribute_heads=heads)
  params = nn.unbox(model.init(jax.random.key(0), np.zeros((1, SEQ_LEN), np.int32))['params'])
  if heads:
    params['attribute_heads']['bias'] = np.linspace(-1, 1, heads, dtype=np.float32)
  return tokenizer, model, params


def test_prefix_reusing_scores_equal_naive_full_passes(setup):
  """One cached prefix per response + attribute suffixes == a full pass per
  (response, attribute), including a context truncated to fit SEQ_LEN; for
  the heads, also with attributes in another order than the heads'."""
  tokenizer, model, params = setup
  long_context = tuple(Turn('AB'[i % 2], f'turn number {i} says something long enough')
                       for i in range(12))
  contexts = [(Turn('A', "What's up?"),), (Turn('A', 'hi'), Turn('B', 'hello there, friend')),
              long_context]
  responses = ['not much.', 'how are you doing today?', 'fine']
  got = scoring.score(params, model, tokenizer, contexts, responses,
                      attributes.NAMES, SEQ_LEN)
  assert got.shape == (3, 4)
  for i, (context, response) in enumerate(zip(contexts, responses)):
    for j, attribute in enumerate(attributes.NAMES):
      want = reference_scoring.full_pass_score(tokenizer, model, params, context, response,
                                               attribute, SEQ_LEN)
      np.testing.assert_allclose(got[i, j], want, rtol=1e-5)
  assert len({round(float(p), 6) for p in got.ravel()}) > 1  # not a constant
  reordered = scoring.score(params, model, tokenizer, contexts, responses,
                            ('UNSAFE', 'SENSIBLE'), SEQ_LEN)
  np.testing.assert_allclose(reordered, got[:, [3, 0]], rtol=1e-5)
