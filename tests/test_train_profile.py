"""The train-step profile names each thunk's work by the model operation it came from."""

import dataclasses

import pytest

from benchmarks import train_profile
from lamda_jax import config as config_lib
from tests.configs import tiny_docs

HLO = '''
%fused_computation.256 (param_0: f32[8,64], param_1: f32[8,64]) -> f32[8,8] {
  %param_0 = f32[8,64]{1,0} parameter(0)
  %dot_general.24 = f32[8,8]{1,0} dot(%param_0, %param_1), lhs_contracting_dims={1}, rhs_contracting_dims={1}, metadata={op_name="jit(train_step)/jvp(Decoder)/layers_4/attention/bhqd,bhkd->bhqk/dot_general"}
  ROOT %exp.3 = f32[8,8]{1,0} exponential(%dot_general.24), metadata={op_name="jit(train_step)/jvp(Decoder)/layers_4/attention/exp"}
}

ENTRY %main (a: f32[8,64]) -> f32[8,8] {
  %ynn_fusion.5 = f32[512,32000]{1,0} fusion(%a, %b), kind=kCustom, metadata={op_name="jit(train_step)/transpose(jvp(Decoder))/ble,blv->ev/dot_general" stack_frame_id=1}
  %ynn_fusion.256 = f32[8,8]{1,0} fusion(%a, %a), kind=kCustom, calls=%fused_computation.256, metadata={op_name="jit(train_step)/jvp(Decoder)/layers_4/attention/reduce_max"}
  ROOT %copy.1 = f32[8,8]{1,0} copy(%c)
}
'''


def test_op_names_are_read_from_the_compiled_text_and_a_fusion_is_named_by_its_dot():
  names = train_profile.op_names(HLO)
  assert names['ynn_fusion.5'] == 'jit(train_step)/transpose(jvp(Decoder))/ble,blv->ev/dot_general'
  assert names['ynn_fusion.256'] == ('jit(train_step)/jvp(Decoder)/layers_4/attention/'
                                     'bhqd,bhkd->bhqk/dot_general')
  assert names['copy.1'] == ''
  assert names['exp.3'].endswith('/exp')


@pytest.mark.parametrize('op_name,kind', [
    ('jit(train_step)/transpose(jvp(Decoder))/ble,blv->ev/dot_general', 'output projection'),
    ('jit(train_step)/jvp(Decoder)/ble,ve->blv/dot_general', 'output projection'),  # tied
    ('jit(train_step)/jvp(Decoder)/layers_3/attention/ble,ehd->blhd/dot_general', 'projections'),
    ('jit(train_step)/transpose(jvp(Decoder))/layers_0/attention/bhqk,bhkd->bhqd/dot_general',
     'attention: batched dots'),
    ('jit(train_step)/jvp(Decoder)/layers_1/attention/reduce_max', 'attention: softmax'),
    ('jit(train_step)/jvp(Decoder)/layers_1/mlp/tanh', 'MLP'),
    ('jit(train_step)/jvp(Decoder)/layers_1/pre_mlp_norm/rsqrt', 'norms'),
    ('jit(train_step)/jvp(Decoder)/relpos_bias/hn,dn->hd/dot_general', 'relative position bias'),
    ('jit(train_step)/jvp(Decoder)/relpos_bias/pad', 'relative position bias'),
    ('jit(train_step)/jvp()/reduce', 'loss and metrics'),
    ('jit(train_step)/sqrt', 'optimizer'),
    ('', 'unnamed'),
])
def test_each_op_name_has_its_kind(op_name, kind):
  assert train_profile.kind_of(op_name).startswith(kind)


def test_concurrency_counts_the_thunks_in_flight_and_each_one_alone():
  # a and b overlap for 5 ns, d runs beside c, e starts as c ends, nothing runs in 15-20.
  events = [('a', 0, 10), ('b', 5, 15), ('c', 20, 30), ('d', 20, 25), ('e', 30, 32)]
  in_flight, alone = train_profile.concurrency(events)
  assert in_flight == pytest.approx({0: 5e-9, 1: 17e-9, 2: 10e-9})
  assert alone == pytest.approx({'a': 5e-9, 'b': 5e-9, 'c': 5e-9, 'e': 2e-9})


def test_a_tiny_step_is_profiled_and_its_dots_found():
  experiment = config_lib.load(tiny_docs.get_config())
  experiment = dataclasses.replace(experiment, train=dataclasses.replace(
      experiment.train, batch_size=8, seq_len=64))
  result = train_profile.profile(experiment, steps=1)
  kinds = result['by_kind']
  assert 'projections (q, k, v, out, MLP) and their gradients' in kinds
  assert 'attention: batched dots over positions' in kinds
  assert abs(sum(entry['share'] for entry in kinds.values()) - 1) < 1e-6
  # Thunks run on at most this machine's cores at once, within one step's wall time.
  assert 0 < result['thunk_seconds_per_step'] < 8 * result['wall_seconds_per_step']
  assert all(entry['op_name'] is not None for entry in result['slowest'])
  in_flight = result['seconds_per_step_with_n_thunks_in_flight']
  assert 0 < sum(in_flight.values()) <= result['wall_seconds_per_step']
  assert all(0 <= entry['seconds_alone'] <= entry['seconds'] for entry in kinds.values())
