"""The peer: HuggingFace LlamaForCausalLM on PyTorch, on the CPU (or CUDA with
--device=cuda, where its f32 matmuls stay full f32 as torch's default is).

Run by benchmarks/train_throughput.py (--task train: same dimensions and
optimizer as ours) and benchmarks/decode_throughput.py (--task generate:
`generate` with the KV cache and top-k sampling) in its own environment
(.venv-bench, with torch==2.13.0 and transformers). Prints one JSON line per
measurement.
"""

import argparse
import json
import time

import machine  # benchmarks/machine.py: this script runs as a file, from beside it
import torch
import transformers

CPU = machine.describe_cpu()  # the peer's lines name their CPU too
HOST_MEMORY = machine.describe_host_memory()


def _synchronize(device):
  if device == 'cuda':
    torch.cuda.synchronize()


def gemm_peak(dtype, device, repeats=10):
  """The fastest of `repeats` matmuls, as lamda_jax.metrics.measure_peak_flops
  measures (2048 on a CPU, 8192 on a GPU, where 2048 is launch-bound)."""
  size = 2048 if device == 'cpu' else 8192
  x = torch.ones(size, size, dtype=dtype, device=device)
  x @ x  # pylint: disable=pointless-statement
  fastest = float('inf')
  for _ in range(repeats):
    _synchronize(device)
    start = time.perf_counter()
    x @ x  # pylint: disable=pointless-statement
    _synchronize(device)
    fastest = min(fastest, time.perf_counter() - start)
  return 2 * size**3 / fastest


def make_model(args):
  torch.manual_seed(0)
  config = transformers.LlamaConfig(
      vocab_size=args.vocab, hidden_size=args.d_model, intermediate_size=args.d_ff,
      num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=args.heads,
      head_dim=args.head_dim, max_position_embeddings=args.seq_len, tie_word_embeddings=False)
  return transformers.LlamaForCausalLM(config)


def train_throughput(args, bf16: bool) -> float:
  model = make_model(args).to(args.device)
  optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.0)
  tokens = torch.randint(0, args.vocab, (args.batch, args.seq_len), device=args.device)

  def step():
    with torch.autocast(args.device, dtype=torch.bfloat16, enabled=bf16):
      loss = model(input_ids=tokens, labels=tokens).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)

  step()  # warm-up
  _synchronize(args.device)
  start = time.perf_counter()
  for _ in range(args.steps):
    step()
  _synchronize(args.device)
  return args.steps * args.batch * args.seq_len / (time.perf_counter() - start)


def generate_throughput(args, bf16: bool) -> float:
  """New tokens/s: `batch` candidates of `new_tokens` each after one `prompt`-token prompt."""
  model = make_model(args).eval().to(args.device)
  if bf16:
    model = model.to(torch.bfloat16)
  prompt = torch.randint(3, args.vocab, (1, args.prompt), device=args.device)

  def generate():
    with torch.inference_mode():
      return model.generate(prompt, do_sample=True, top_k=40, num_return_sequences=args.batch,
                            max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                            use_cache=True, pad_token_id=0)

  for _ in range(args.warmup):
    generate()
  _synchronize(args.device)
  start = time.perf_counter()
  for _ in range(args.steps):
    out = generate()
  _synchronize(args.device)
  assert out.shape == (args.batch, args.prompt + args.new_tokens)
  return args.steps * args.batch * args.new_tokens / (time.perf_counter() - start)


def main():
  parser = argparse.ArgumentParser()
  for name in ('vocab', 'd_model', 'd_ff', 'layers', 'heads', 'head_dim', 'seq_len', 'batch',
               'steps'):
    parser.add_argument(f'--{name}', type=int, required=True)
  parser.add_argument('--prompt', type=int, default=128)
  parser.add_argument('--new_tokens', type=int, default=64)
  parser.add_argument('--warmup', type=int, default=1, help='untimed generations first')
  parser.add_argument('--name', required=True)
  parser.add_argument('--task', choices=('train', 'generate'), default='train')
  parser.add_argument('--device', choices=('cpu', 'cuda'), default='cpu')
  parser.add_argument('--precisions', default='float32,bfloat16')
  args = parser.parse_args()
  precisions = args.precisions.split(',')
  device = torch.cuda.get_device_name() if args.device == 'cuda' else 'cpu'
  if args.task == 'generate':
    for precision in precisions:
      print(json.dumps({
          'system': f'hf_llama_torch_{torch.__version__}', 'cpu': CPU, 'host_memory': HOST_MEMORY,
          'device': device, 'config': args.name,
          'task': 'generate', 'precision': precision,
          'new_tokens_per_second': generate_throughput(args, precision == 'bfloat16'),
          'torch_threads': torch.get_num_threads()}), flush=True)
    return
  for precision in precisions:
    print(json.dumps({
        'system': f'hf_llama_torch_{torch.__version__}', 'cpu': CPU, 'host_memory': HOST_MEMORY,
        'device': device, 'config': args.name,
        'precision': precision + (' (autocast)' if precision == 'bfloat16' else ''),
        'tokens_per_second': train_throughput(args, precision == 'bfloat16'),
        'gemm_peak_flops': gemm_peak(getattr(torch, precision), args.device),
        'torch_threads': torch.get_num_threads()}), flush=True)


if __name__ == '__main__':
  main()
