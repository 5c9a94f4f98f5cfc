"""A bad config fails before anything compiles, with an error naming the field."""

import glob
import importlib.util
import os
import re
import subprocess
import sys

import ml_collections
import pytest

from lamda_jax import config as config_lib
from lamda_jax.configs import tiny
from lamda_jax.training import partitioning

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILES = sorted(glob.glob(os.path.join(ROOT, 'configs', '*.py')) +
                      glob.glob(os.path.join(ROOT, 'experiments', '*.py')))
# experiments/ also holds commands (plot_run, quality_safety_recipe): a config defines get_config.
CONFIG_FILES = [path for path in CONFIG_FILES if not path.endswith('__init__.py') and (
    '/configs/' in path or 'def get_config' in open(path, encoding='utf-8').read())]


def _tiny_with(section, field, value):
  config = tiny.get_config().to_dict()  # plain dict: load() must not rely on ConfigDict's types
  if section:
    config[section][field] = value
  else:
    config[field] = value
  return config


@pytest.mark.parametrize('section,field,value,message', [
    ('model', 'num_layers', 0, 'config.model.num_layers: must be >= 1, got 0'),
    ('model', 'd_model', 12.5, 'config.model.d_model: must be an integer, got 12.5'),
    ('model', 'num_heads', -3, 'config.model.num_heads: must be >= 1'),
    ('model', 'head_dim', True, 'config.model.head_dim: must be an integer'),
    ('model', 'd_ff', 0, 'config.model.d_ff: must be >= 1'),
    ('model', 'vocab_size', 0, 'config.model.vocab_size: must be >= 1'),
    ('model', 'activations', ('gelu', 'swish3'), "config.model.activations: unknown value 'swish3'"),
    ('model', 'activations', (), 'config.model.activations: needs at least one activation'),
    ('model', 'relative_attention_num_buckets', 31,
     'config.model.relative_attention_num_buckets: must be even'),
    ('model', 'relative_attention_max_distance', 16,
     'config.model.relative_attention_max_distance: must exceed num_buckets / 2 = 16'),
    ('model', 'layer_norm_epsilon', 0.0, 'config.model.layer_norm_epsilon: must be a number in (0, 1)'),
    ('model', 'dropout_rate', 1.0, 'config.model.dropout_rate: must be a number in [0, 1)'),
    ('model', 'dtype', 'float8', "config.model.dtype: unknown value 'float8'"),
    ('model', 'param_dtype', 'int8', "config.model.param_dtype: unknown value 'int8'"),
    ('model', 'remat_policy', 'some', "config.model.remat_policy: unknown value 'some'"),
    ('model', 'n_layers', 4, 'config.model.n_layers: unknown field'),
    ('model', 'num_kv_heads', 3, 'config.model.num_kv_heads: must divide num_heads 4, got 3'),
    ('model', 'num_kv_heads', 8, 'config.model.num_kv_heads: must be <= 4, got 8'),
    ('model', 'position_encoding', 'alibi', "config.model.position_encoding: unknown value 'alibi'"),
    ('model', 'rope_max_wavelength', 0, 'config.model.rope_max_wavelength: must be >= 1'),
    ('model', 'causal_blocks', 0, 'config.model.causal_blocks: must be >= 1'),
    ('mesh', 'tensor', 0, 'config.mesh.tensor: must be >= 1'),
    ('mesh', 'fsdp', -1, 'config.mesh: at most one axis may be -1'),
    ('train', 'seq_len', 0, 'config.train.seq_len: must be >= 1'),
    ('finetune', 'generator_weight', -1.0,
     'config.finetune.generator_weight: must be a number >= 0'),
    ('finetune', 'eval_fraction', 1.5, 'config.finetune.eval_fraction: must be a number in (0, 1)'),
    ('finetune', 'discriminator', 'head', "config.finetune.discriminator: unknown value 'head'"),
    ('data', 'eval_fraction', 0.0, 'config.data.eval_fraction: must be a number in (0, 1)'),
    ('data', 'beam_options', ('--direct_num_workers=2',),
     'config.data.beam_options: given without data.beam_runner'),
    ('data', 'beam_runner', 'Direct', "config.data.beam_runner: unknown value 'Direct'"),
    ('data', 'read_threads', 0, 'config.data.read_threads: must be >= 1, got 0'),
    ('data', 'streams', 0, 'config.data.streams: must be >= 1, got 0'),
    ('data', 'streams', 7, 'config.data.streams: 7 does not divide train.batch_size'),
    ('data', 'records_per_shard', 0, 'config.data.records_per_shard: must be >= 1, got 0'),
    ('train', 'batch_size', 2.0, 'config.train.batch_size: must be an integer'),
    ('decode', 'num_candidates', 0, 'config.decode.num_candidates: must be >= 1'),
    ('decode', 'top_k', -1, 'config.decode.top_k: must be >= 0'),
    ('decode', 'temperature', -0.5, 'config.decode.temperature: must be a number >= 0'),
    ('decode', 'top_p', 0.0, 'config.decode.top_p: must be a number in (0, 1], got 0.0'),
    ('decode', 'top_p', 1.5, 'config.decode.top_p: must be a number in (0, 1], got 1.5'),
    ('decode', 'ranking', 'meena', "config.decode.ranking: unknown value 'meena'"),
    ('decode', 'safety_threshold', 2, 'config.decode.safety_threshold: must be a number in [0, 1], got 2'),
    ('decode', 'fallback_reply', ' ', 'config.decode.fallback_reply: must be a non-empty string'),
    ('serve', 'port', 70000, 'config.serve.port: must be <= 65535'),
    ('train', 'learning_rate', 0.0, 'config.train.learning_rate: must be a number > 0, got 0.0'),
    ('train', 'adam_b2', 1.5, 'config.train.adam_b2: must be a number in [0, 1], got 1.5'),
    ('train', 'z_loss', True, 'config.train.z_loss: must be a number >= 0, got True'),
    ('model', 'scan_layers', 'yes', "config.model.scan_layers: must be True or False, got 'yes'"),
    ('filter', 'unsafe_max', -0.1, 'config.filter.unsafe_max: must be a number in [0, 1]'),
    ('distributed', 'num_processes', 0, 'config.distributed.num_processes: must be -1'),
    ('distributed', 'process_id', -2, 'config.distributed.process_id: must be >= -1, got -2'),
    ('distributed', 'coordinator_address', 'host', 'config.distributed.coordinator_address: '
     'must be "" or "host:port"'),
    ('distributed', 'enabled', 1, 'config.distributed.enabled: must be True or False, got 1'),
    ('distributed', 'hosts', 2, 'config.distributed.hosts: unknown field'),
    ('serve', 'max_request_bytes', 0, 'config.serve.max_request_bytes: must be >= 1'),
    ('eval', 'sampled_contexts', -1, 'config.eval.sampled_contexts: must be >= 0'),
    ('', 'logical_axis_rules', (('embed', 'fsdp'), ('experts', 'tensor')),
     "config.logical_axis_rules[1]: unknown value 'experts'"),
    ('', 'logical_axis_rules', (('embed', 'model'),), "config.logical_axis_rules[0]: unknown value 'model'"),
    ('', 'logical_axis_rules', config_lib.DEFAULT_AXIS_RULES[:-2],
     "config.logical_axis_rules: no rule for relpos_buckets, attributes; add one, e.g. "
     "[('relpos_buckets', None), ('attributes', None)]"),
])
def test_each_bad_field_has_its_own_error(section, field, value, message):
  with pytest.raises(config_lib.ConfigError) as error:
    config_lib.load(_tiny_with(section, field, value))
  assert message in str(error.value)


def test_rope_needs_an_even_head_dim():
  config = _tiny_with('model', 'position_encoding', 'rope')
  config['model']['head_dim'] = 33
  with pytest.raises(config_lib.ConfigError,
                     match='config.model.head_dim: must be even for rope .* got 33'):
    config_lib.load(config)


def test_finetune_needs_a_positive_task_weight():
  config = tiny.get_config().to_dict()
  config['finetune'].update(generator_weight=0.0, discriminator_weight=0.0, pretrain_weight=0.0)
  with pytest.raises(config_lib.ConfigError, match='config.finetune: at least one task weight'):
    config_lib.load(config)


def test_missing_required_field_is_named():
  config = tiny.get_config().to_dict()
  del config['model']['d_model']
  with pytest.raises(config_lib.ConfigError, match=r'config\.model\.d_model: is required'):
    config_lib.load(config)


@pytest.mark.parametrize('mesh,devices,want', [
    ({'data': -1, 'fsdp': 1, 'tensor': 1}, 8, {'data': 8, 'fsdp': 1, 'tensor': 1}),
    ({'data': 2, 'fsdp': -1, 'tensor': 2}, 8, {'data': 2, 'fsdp': 2, 'tensor': 2}),
    ({'data': 1, 'fsdp': -1, 'tensor': 8}, 1024, {'data': 1, 'fsdp': 128, 'tensor': 8}),
    ({'data': 2, 'fsdp': 2, 'tensor': 2}, 8, {'data': 2, 'fsdp': 2, 'tensor': 2}),
])
def test_mesh_resolves_fill_axis(mesh, devices, want):
  assert config_lib.MeshConfig(**mesh).resolve(devices) == want


@pytest.mark.parametrize('mesh,devices,message', [
    ({'data': 2, 'fsdp': 2, 'tensor': 2}, 4, 'needs 8 devices but 4 are available'),
    ({'data': -1, 'fsdp': 3, 'tensor': 1}, 8, '8 devices cannot be split by the fixed axes'),
])
def test_mesh_that_does_not_match_the_devices_fails(mesh, devices, message):
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.MeshConfig(**mesh).resolve(devices)


def test_multi_slice_mesh_keeps_model_axes_inside_a_slice():
  sizes = config_lib.MeshConfig(data=-1, fsdp=16, tensor=8, dcn_data=4).resolve(1024)
  assert sizes == {'data': 8, 'fsdp': 16, 'tensor': 8}
  assert partitioning.slice_shapes(sizes, 4) == ((2, 16, 8), (4, 1, 1))
  with pytest.raises(config_lib.ConfigError, match=r'config\.mesh\.dcn_data: 3 slices do not '
                                                   r'divide the data axis of 8'):
    config_lib.MeshConfig(data=-1, fsdp=16, tensor=8, dcn_data=3).resolve(1024)


def test_multi_slice_mesh_on_devices_without_slices_is_a_clear_error():
  config = tiny.get_config()
  config.mesh.dcn_data = 2
  with pytest.raises(config_lib.ConfigError, match=r'config\.mesh\.dcn_data: 2 slices requested '
                                                   r'but the devices come from no slices'):
    partitioning.create_mesh(config_lib.load(config))


@pytest.mark.parametrize('path', CONFIG_FILES, ids=os.path.basename)
def test_every_shipped_config_is_valid(path):
  spec = importlib.util.spec_from_file_location('config_under_test', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  experiment = config_lib.load(module.get_config())
  assert experiment.name == os.path.basename(path).removesuffix('.py')


def test_config_round_trips_through_config_dict():
  experiment = config_lib.load(tiny.get_config())
  assert isinstance(experiment.to_config_dict(), ml_collections.ConfigDict)
  assert config_lib.load(experiment.to_config_dict()) == experiment


def _cli(*args):
  return subprocess.run([sys.executable, '-m', 'lamda_jax.main', *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=300, check=False)


def test_cli_rejects_a_bad_override_with_the_field_name():
  result = _cli('--config', 'configs/tiny.py', '--config.model.num_heads=0', '--mode', 'describe')
  assert result.returncode == 2
  assert 'Invalid config configs/tiny.py: config.model.num_heads: must be >= 1, got 0' in result.stderr
  assert result.stdout == ''


@pytest.mark.parametrize('mode, message', [
    ('chat', 'config.decode.from_run: the run whose model answers is required'),
    ('serve', 'config.decode.from_run: the run whose model answers is required'),
    ('eval_grounded', 'config.decode.from_run: the run whose model answers is required'),
])
def test_cli_modes_that_need_a_run_say_which_field(mode, message):
  result = _cli('--config', 'configs/tiny.py', '--mode', mode)
  assert result.returncode == 2
  assert f'Invalid config configs/tiny.py: {message}' in result.stderr


def test_cli_chat_from_an_empty_workdir_names_it_and_writes_nothing(tmp_path):
  result = _cli('--config', 'configs/tiny.py', '--mode', 'chat',
                f'--config.decode.from_run={tmp_path}')
  assert result.returncode == 2
  assert f'config.decode.from_run: no tokenizer at {tmp_path}/tokenizer.model' in result.stderr
  assert not list(tmp_path.iterdir())  # reading a run never trains a tokenizer into it


@pytest.mark.parametrize('section,field,value', [
    ('data', 'tfds_dir', 'gs://lab/tfds'),
    ('finetune', 'labels', ('ratings/a.jsonl', 's3://lab/labels/*.jsonl')),
    ('decode', 'from_run', 'gs://lab/runs/demo'),
])
def test_a_bucket_url_for_a_path_says_to_mount_it(section, field, value):
  url = value if isinstance(value, str) else value[1]
  bucket = url.split('://')[1].split('/')[0]
  with pytest.raises(config_lib.ConfigError,
                     match=f'config.{section}.{field}: {re.escape(repr(url))} is a .*; .* mount the bucket '
                           f'.*gcsfuse {bucket} /gcs/{bucket}'):
    config_lib.load(_tiny_with(section, field, value))


def test_a_bucket_url_for_a_source_or_the_workdir_is_refused_before_anything_is_written(tmp_path):
  config = tiny.get_config()
  config.data.sources.chitchat.paths = ('gs://lab/dialogs/*.jsonl',)
  with pytest.raises(config_lib.ConfigError, match='config.data.sources.chitchat.paths:'):
    config_lib.load(config)
  result = _cli('--config', 'configs/tiny.py', '--workdir', 'gs://lab/runs/a', '--mode', 'train')
  assert result.returncode == 2 and "--workdir: 'gs://lab/runs/a' is a gs:// URL" in result.stderr
  assert not os.path.exists(os.path.join(ROOT, 'gs:'))  # no local folder named like the URL


def test_cli_rejects_an_unknown_field():
  result = _cli('--config', 'configs/tiny.py', '--config.model.n_layers=3')
  assert result.returncode != 0
  assert 'n_layers' in result.stderr


def test_configs_load_from_outside_the_repository(tmp_path):
  """configs/ installs as lamda_jax.configs: a config that builds on another
  loads by path from any directory, and imports from any install."""
  path = os.path.join(ROOT, 'configs', 'tiny_research.py')
  result = subprocess.run(
      [sys.executable, '-m', 'lamda_jax.main', '--config', path, '--mode', 'describe'],
      cwd=tmp_path, capture_output=True, text=True, check=False,
      env={**os.environ, 'JAX_PLATFORMS': 'cpu', 'PYTHONPATH': ''})
  assert result.returncode == 0, result.stderr[-2000:]
  assert '"name": "tiny_research"' in result.stdout
  imported = subprocess.run(
      [sys.executable, '-c', 'import lamda_jax.configs.lamda_137b as m; print(m.__name__)'],
      cwd=tmp_path, capture_output=True, text=True, check=False, env={**os.environ, 'PYTHONPATH': ''})
  assert imported.stdout.strip() == 'lamda_jax.configs.lamda_137b', imported.stderr[-2000:]
