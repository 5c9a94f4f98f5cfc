"""Parameter counts and FLOPs of the paper configs, against hand-written formulas."""

import json
import math
import os
import subprocess
import sys

import pytest

from experiments import tiny_swiglu
from lamda_jax import config as config_lib
from lamda_jax.configs import bench, lamda_2b, lamda_8b, lamda_137b, tiny
from lamda_jax.model import stats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALL = {module.__name__.split('.')[-1]: module for module in
       (tiny, bench, lamda_2b, lamda_8b, lamda_137b, tiny_swiglu)}


def hand_count(m: config_lib.ModelConfig):
  """(total, non-embedding) from the architecture, written out by hand."""
  kv_heads = m.num_kv_heads or m.num_heads
  per_layer = (2 * m.d_model  # two RMS norm scales
               + 2 * m.d_model * m.num_heads * m.head_dim  # q, o
               + 2 * m.d_model * kv_heads * m.head_dim  # k, v
               + (len(m.activations) + 1) * m.d_model * m.d_ff)  # wi_*, wo
  relative_bias = m.num_heads * m.relative_attention_num_buckets
  non_embedding = (m.num_layers * per_layer + m.d_model
                   + (relative_bias if m.position_encoding == 'relative_bias' else 0))
  embedding = m.vocab_size * m.d_model * (1 if m.tie_embeddings else 2)
  return non_embedding + embedding, non_embedding


@pytest.mark.parametrize('name', sorted(ALL))
def test_param_counts_match_hand_formula(name):
  experiment = config_lib.load(ALL[name].get_config())
  described = stats.describe(experiment)
  total, non_embedding = hand_count(experiment.model)
  assert described['params_total'] == total
  assert described['params_non_embedding'] == non_embedding
  assert described['param_bytes'] == 4 * total  # float32 parameters


def test_rope_and_grouped_query_attention_counts():
  config = tiny.get_config()
  config.model.position_encoding, config.model.num_kv_heads = 'rope', 1
  experiment = config_lib.load(config)
  described = stats.describe(experiment)
  assert (described['params_total'], described['params_non_embedding']) == hand_count(
      experiment.model)
  m = experiment.model
  norms = (2 * m.num_layers + 1) * m.d_model
  matmul_weights = described['params_non_embedding'] - norms + m.d_model * m.vocab_size
  assert described['flops_per_token_dense'] == 6 * matmul_weights
  assert 'relpos_bias' not in described['shapes']


def test_tied_embeddings_count_once():
  config = tiny.get_config()
  config.model.tie_embeddings = True
  experiment = config_lib.load(config)
  assert stats.describe(experiment)['params_total'] == hand_count(experiment.model)[0]


@pytest.mark.parametrize('name,billions', [('lamda_2b', 2.1), ('lamda_8b', 8.6),
                                           ('lamda_137b', 137.4)])
def test_paper_sizes(name, billions):
  described = stats.describe(config_lib.load(ALL[name].get_config()))
  assert round(described['params_non_embedding'] / 1e9, 1) == billions


def test_137b_shapes_are_the_papers():
  described = stats.describe(config_lib.load(lamda_137b.get_config()))
  layers = described['shapes']['layers']
  assert layers['attention']['query'] == [64, 8192, 128, 128]
  assert layers['mlp']['wi_0'] == [64, 8192, 65536]
  assert described['shapes']['relpos_bias']['rel_embedding'] == [128, 32]
  assert described['tokens_per_batch'] == 262_144  # the paper's 256K-token batches


def test_flops_per_token_137b_by_hand():
  described = stats.describe(config_lib.load(lamda_137b.get_config()))
  weights = 64 * (4 * 8192 * 16384 + 3 * 8192 * 65536) + 8192 * 32000
  assert described['flops_per_token'] == 6 * weights + 12 * 64 * 128 * 128 * 2048
  # The paper: 3.55e23 FLOPs in total; at our per-token cost that is ~0.42T tokens.
  assert 3.55e23 / described['flops_per_token'] == pytest.approx(0.42e12, rel=0.02)


def test_describe_cli_prints_one_json_line_without_allocating():
  # 137B float32 parameters are 550 GB: this only passes if nothing is allocated.
  result = subprocess.run(
      [sys.executable, '-m', 'lamda_jax.main', '--config', 'configs/lamda_137b.py', '--mode',
       'describe'], cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
  lines = result.stdout.strip().splitlines()
  assert len(lines) == 1
  described = json.loads(lines[0])
  for key in ('params_total', 'params_non_embedding', 'flops_per_token', 'param_bytes', 'shapes'):
    assert key in described
  assert described['params_non_embedding'] == 137_440_014_336
  assert described['param_bytes'] > 500e9
  assert described['logical_axes']['layers']['mlp']['wo'] == ['layers', 'mlp', 'embed']
  assert math.isclose(described['flops_per_token'], described['flops_per_token_dense'] +
                      described['flops_per_token_attention'])
