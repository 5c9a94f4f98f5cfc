"""experiments/architecture_ablations.py, run small: the variants train on one
prepared copy of the data, and the table says what each change costs."""

import json

import pytest

from experiments import architecture_ablations
from lamda_jax import config as config_lib
from tests.configs import tiny_docs


@pytest.mark.slow
def test_ablations_share_the_data_and_report_each_variant(tmp_path):
  config = tiny_docs.get_config()
  config.model.update(num_layers=1, d_model=32, num_heads=4, head_dim=8, d_ff=64)
  config.train.update(steps=3, seq_len=32, batch_size=8, eval_every=3, eval_batches=1,
                      log_every=1, checkpoint_every=3, peak_flops_per_device=1e12)
  experiment = config_lib.load(config)
  results = architecture_ablations.run(experiment, str(tmp_path), only=('paper', 'llama2'))

  assert list(results) == ['paper', 'llama2']
  assert results['llama2']['changes'] == {'position_encoding': 'rope', 'num_kv_heads': 2,
                                          'activations': ('silu', 'linear')}
  # Two of four key/value heads: k and v lose half their columns, the cache half its
  # bytes; RoPE has no relative bias table; SwiGLU has gated-GELU's parameters.
  m = experiment.model
  assert (results['paper']['params_non_embedding'] - results['llama2']['params_non_embedding']
          == 2 * m.num_layers * m.d_model * 2 * m.head_dim
          + m.num_heads * m.relative_attention_num_buckets)
  assert results['llama2']['kv_cache_bytes_per_token'] == 2 * m.num_layers * 2 * m.head_dim * 4
  assert results['paper']['kv_cache_bytes_per_token'] == 2 * results['llama2'][
      'kv_cache_bytes_per_token']
  for name, result in results.items():
    assert 0 < result['eval_loss'] < 20, name
    assert not (tmp_path / name / 'tokenizer.model').exists()  # one data/ for every variant
    ran = json.loads((tmp_path / name / 'config.json').read_text())
    assert ran['model']['num_kv_heads'] == (2 if name != 'paper' else 0)
  assert (tmp_path / 'data' / 'tokenizer.model').exists()
  assert (tmp_path / 'curves.png').stat().st_size > 0
  table = (tmp_path / 'results.md').read_text().splitlines()
  assert [row.split(' | ')[0] for row in table[-2:]] == ['| paper', '| llama2']
